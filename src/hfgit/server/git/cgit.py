"""The ``git`` engine: fetches answered by ``git upload-pack``, pushes by hfgit's own.

Pack generation in Python is several times slower than C git (``PERF-LEVERS.md``), so
``git upload-pack --stateless-rpc`` answers both halves of a fetch. Everything that
decides stays in Python and runs first: the gate, then :mod:`.wants` on the whole
request body (C git would serve any existing object in protocol v2), then
:func:`.reach.check_wants`. git runs as :mod:`.gitproc` runs it, holding a
:class:`.slots.PackSlots` slot while it builds a pack, and its answer is relayed in
64 KiB chunks: the worker's memory stays flat whatever the pack's size. A client that
goes away ends the relay with an error, and the process group is killed.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping

from ..refusal import Refusal
from .engines import (
    RECEIVE_PACK,
    UPLOAD_PACK,
    EngineContext,
    GitSession,
    ServiceHandler,
    dulwich_engine,
    read_fetch,
    register,
)
from .gitproc import PACK_MEMORY_CONFIG, GitBinary
from .slots import PackSlots
from .wants import FetchLimits, FetchRefused

log = logging.getLogger(__name__)


class GitUploadPack:
    """``git upload-pack --stateless-rpc`` behind the fetch rules."""

    def __init__(
        self, git: GitBinary, limits: FetchLimits, slots: PackSlots, pack_threads: int
    ) -> None:
        self.git = git
        self.limits = limits
        self.slots = slots
        self.config = (
            # The wants were checked against the current refs before git runs.
            "uploadpack.allowAnySHA1InWant=true",
            "uploadpack.allowFilter=true",
            f"pack.threads={pack_threads}",
            *PACK_MEMORY_CONFIG,
        )
        #: Protocol v2's capability advertisement by object id length (sha1, sha256).
        self._v2_capabilities: dict[int, bytes] = {}
        self._v2_lock = threading.Lock()

    def _run(
        self,
        session: GitSession,
        write: Callable[[bytes], object],
        *options: str,
        body: bytes,
        pass_fds: tuple[int, ...] = (),
    ) -> int:
        """Run upload-pack on the repository the gate resolved, relaying its answer;
        returns git's exit status."""
        process = self.git.spawn(
            self.config,
            "upload-pack",
            "--stateless-rpc",
            "--strict",
            *options,
            "--",
            os.path.abspath(session.repo.path),
            input=body,
            protocol_v2=session.protocol_v2,
            pass_fds=pass_fds,
        )
        wrote = False
        try:
            for chunk in process.chunks():
                write(chunk)
                wrote = True
        finally:
            status = process.close()
        if status != 0:
            log.warning(
                "git upload-pack on %s exited %s: %s",
                session.record.repo_id,
                status,
                process.stderr.decode("utf-8", "replace").strip()[-500:],
            )
            if not wrote:
                raise FetchRefused("upload-pack: this repository's storage is unavailable")
        return status

    def advertise(self, session: GitSession, write: Callable[[bytes], object]) -> None:
        try:
            if session.protocol_v2:
                write(self._capabilities(session))
            else:
                self._run(session, write, "--advertise-refs", body=b"")
        except FetchRefused:
            # git could not read the repository (logged): the storage's fault, not the client's.
            raise Refusal(503, "This repository's storage is unavailable.") from None

    def _capabilities(self, session: GitSession) -> bytes:
        """Protocol v2's first answer, which lists capabilities and no refs.

        It depends on git's version, its command line and the repository's config and
        object format; hfgit writes every repository's config alike, so git runs for it
        once per object format and worker, not on every v2 fetch and ls-remote.
        """
        oid_length = session.repo.object_format.hex_length
        with self._v2_lock:
            known = self._v2_capabilities.get(oid_length)
        if known is not None:
            return known
        chunks: list[bytes] = []
        status = self._run(session, chunks.append, "--advertise-refs", body=b"")
        answer = b"".join(chunks)
        if status == 0:
            with self._v2_lock:
                self._v2_capabilities[oid_length] = answer
        return answer

    def serve(
        self,
        session: GitSession,
        read: Callable[[int], bytes],
        write: Callable[[bytes], object],
    ) -> None:
        v2 = session.protocol_v2
        checked = read_fetch(session, read, self.limits, self.git, v2=v2, allow_filter=True)
        if checked is None:
            return
        body, request = checked
        if request.command == "ls-refs":
            self._run(session, write, body=body)
            return
        with self.slots.hold() as fd:
            self._run(session, write, body=body, pass_fds=(fd,))


def git_engine(context: EngineContext) -> Mapping[str, ServiceHandler]:
    """C git for fetches; pushes stay on hfgit's checked, atomic receive-pack."""
    if context.git is None:
        raise ValueError("The git engine needs a git binary on PATH (or use --engine dulwich).")
    cpus = os.cpu_count() or 1
    threads = max(1, cpus // context.max_pack_processes)
    data_dir = context.git.home.parent
    slots = PackSlots(data_dir / "run" / "pack-slots", context.max_pack_processes)
    upload = GitUploadPack(context.git, context.fetch_limits, slots, threads)
    return {UPLOAD_PACK: upload, RECEIVE_PACK: dulwich_engine(context)[RECEIVE_PACK]}


register("git", git_engine)
