"""receive-pack that either lands a push whole and checked, or changes nothing.

dulwich's ``ReceivePackHandler._apply_pack`` moves the incoming pack into
``objects/pack`` before looking at it, accepts refs to objects nobody sent, ignores the
result of its compare-and-swap and reports ``ok`` anyway. Here a push is received into
quarantine and checked in one pass (:mod:`.packs`, :mod:`.checks`), every new tip must
be connected, and the refs move under the repository lock by compare-and-swap
(:mod:`.refs`).
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from dulwich.errors import (
    ApplyDeltaError,
    ChecksumMismatch,
    GitProtocolError,
    ObjectFormatException,
)
from dulwich.object_store import PackInputTooLarge
from dulwich.objects import ObjectID, hex_to_sha
from dulwich.pack import PackFileDisappeared, UnresolvedDeltas
from dulwich.protocol import CAPABILITY_ATOMIC, SIDE_BAND_CHANNEL_PROGRESS
from dulwich.refs import Ref, check_ref_format
from dulwich.server import ReceivePackHandler

from ... import metrics
from ...config import MiB, Settings
from ...disk import REF_RESERVE, free_bytes, out_of_space
from ...leaks import Leak, LiveToken, refusal_text
from ..body import BodyError
from .checks import PackChecker, PackGraph, PackRejected, walk_tip
from .maintenance import MaintenancePolicy, scheduler
from .packs import Quarantine
from .refs import Command, atomic_failed, update_refs

log = logging.getLogger(__name__)

_LFS_HINT = (
    "Your push was rejected because it contains files larger than {limit}.\n"
    "Please use Git LFS to store large files: git lfs track <file>, commit, and push again.\n"
    "Offending files:\n"
)


@dataclass(frozen=True)
class PushLimits:
    max_pack_bytes: int
    max_blob_bytes: int
    max_object_bytes: int
    max_ref_updates: int
    stale_lock_seconds: int
    #: When a repository this push landed in is due for a repack.
    maintenance: MaintenancePolicy

    @classmethod
    def from_settings(cls, settings: Settings) -> PushLimits:
        return cls(
            max_pack_bytes=settings.max_pack_bytes,
            max_blob_bytes=settings.max_blob_bytes,
            max_object_bytes=settings.max_object_bytes,
            max_ref_updates=settings.max_ref_updates,
            stale_lock_seconds=settings.stale_lock_seconds,
            maintenance=MaintenancePolicy(
                max_packs=settings.repack_packs, max_loose=settings.repack_loose_objects
            ),
        )


#: What git shows for a push the server has no room for: ``error: remote unpack failed:
#: …`` and ``! [remote rejected] main -> main (…)``.
NO_SPACE_MESSAGE = "the server is out of disk space; nothing was changed"
NO_SPACE_REASON = b"no space left on the server; try again later"

#: What dulwich raises for a pack that is cut short or corrupt.
_BROKEN_PACK = (
    OSError,
    ChecksumMismatch,
    ApplyDeltaError,
    AssertionError,
    ValueError,
    KeyError,
    EOFError,
    zlib.error,
)


#: Which token-shaped strings are live tokens of this server (``Lookups.live_tokens``).
LiveTokens = Callable[[Iterable[str]], Mapping[str, LiveToken]]


class HardenedReceivePackHandler(ReceivePackHandler):
    """receive-pack with quarantine, object and connectivity checks, and true CAS.

    With ``live_tokens``, a push whose new files hold a live token of this server is
    refused (push protection): the blobs were scanned in the indexing pass, and the
    database is asked once about every candidate of the pack.
    """

    def __init__(
        self,
        *args,
        limits: PushLimits,
        on_push: Callable[[list[Command]], None] | None = None,
        live_tokens: LiveTokens | None = None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._on_push = on_push
        self._live_tokens = live_tokens
        read = self.proto.read_pkt_line
        commands = 0

        def read_counted() -> bytes | None:
            # dulwich collects every command line before looking at any of them; a
            # push somewhat over the limit still gets a readable ng per ref.
            nonlocal commands
            line = read()
            commands += 1
            if commands > 2 * limits.max_ref_updates + 100:
                raise GitProtocolError(
                    f"too many ref updates in one push (limit {limits.max_ref_updates})"
                )
            return line

        self.proto.read_pkt_line = read_counted  # type: ignore[method-assign]

    def _progress(self, message: str) -> None:
        if self._client_capabilities is not None and self.has_capability(b"side-band-64k"):
            for line in message.splitlines():
                self.proto.write_sideband(SIDE_BAND_CHANNEL_PROGRESS, line.encode() + b"\n")

    def _apply_pack(self, refs: list[tuple[ObjectID, ObjectID, Ref]]):
        zero = ObjectID(b"0" * self.repo.object_format.hex_length)
        quarantine: Quarantine | None = None
        try:
            if any(new != zero for _, new, _ in refs):
                try:
                    quarantine = Quarantine(self.repo)
                    checker = PackChecker(
                        self.repo.object_format,
                        self.limits.max_blob_bytes,
                        scan_tokens=self._live_tokens is not None,
                    )
                    pack = quarantine.receive(
                        self.proto.read,
                        getattr(self.proto, "recv", None),
                        checker,
                        max_bytes=self.limits.max_pack_bytes,
                        max_object_bytes=self.limits.max_object_bytes,
                    )
                    graph = checker.finish(pack.get_raw)
                    self._find_leaks(graph)
                except BodyError:
                    raise
                except UnresolvedDeltas:
                    yield from _unpack_failed(
                        refs,
                        "unpack failed: the pack has deltas against objects not in the repository",
                    )
                    return
                except PackInputTooLarge:
                    limit = self.limits.max_pack_bytes // MiB
                    yield from _unpack_failed(refs, f"pack exceeds the {limit} MiB limit")
                    return
                except PackRejected as error:
                    yield from _unpack_failed(refs, str(error))
                    return
                except ObjectFormatException as error:
                    yield from _unpack_failed(refs, f"bad object: {error}")
                    return
                except _BROKEN_PACK as error:
                    if out_of_space(error):
                        log.error("push to %s: out of disk space: %s", self.repo.path, error)
                        # Read the rest (bounded like any body) so that git, still
                        # sending, reads the answer instead of a reset connection.
                        while self.proto.read(64 * 1024):
                            pass
                        yield from _unpack_failed(refs, NO_SPACE_MESSAGE, NO_SPACE_REASON)
                        return
                    log.info("unpack failed: %s", error)
                    yield from _unpack_failed(refs, "unpack failed: truncated or corrupt pack")
                    return
            else:
                graph = PackGraph()
            yield (b"unpack", b"ok")
            yield from self._update_refs(refs, zero, graph, quarantine)
        finally:
            if quarantine is not None:
                quarantine.close()

    def _find_leaks(self, graph: PackGraph) -> None:
        """Mark the blobs that hold a live token: one lookup for all candidates."""
        if self._live_tokens is None or not graph.token_candidates:
            return
        for candidate, token in self._live_tokens(graph.token_candidates).items():
            for blob in graph.token_candidates[candidate]:
                graph.leaked.setdefault(blob, token)

    def _precheck(self, refs, zero: bytes, graph: PackGraph) -> dict[bytes, bytes]:
        """Per-ref refusals that do not depend on the current ref values."""
        errors: dict[bytes, bytes] = {}
        leaks: dict[tuple[bytes, str], Leak] = {}
        if len(refs) > self.limits.max_ref_updates:
            message = f"too many ref updates in one push (limit {self.limits.max_ref_updates})"
            return {ref: message.encode() for _, _, ref in refs}
        head = self.repo.refs.get_symrefs().get(b"HEAD")
        big: dict[str, bytes] = {}
        store = self.repo.object_store
        in_repo = _membership(store)
        for _old, new, ref in refs:
            if not ref.startswith(b"refs/") or not check_ref_format(ref):
                errors[ref] = b"funny refname"
            elif new == zero:
                if ref == head:
                    errors[ref] = b"deletion of the current branch prohibited"
            else:
                report = walk_tip(new, graph, in_repo)
                if report.missing is not None:
                    errors[ref] = b"missing necessary objects"
                elif report.leaks:
                    commit, path, _ = report.leaks[0]
                    errors[ref] = _leak_reason(commit, path, len(report.leaks))
                    for commit, path, blob in report.leaks:
                        leak = Leak(commit.decode(), path, graph.leaked[blob])
                        leaks.setdefault((commit, path), leak)
                elif report.big_files:
                    errors[ref] = b"file too large: use git lfs track (see remote messages)"
                    for path in report.big_files:
                        big.setdefault(path, ref)
                elif ref.startswith(b"refs/heads/") and _kind(new, graph, store) != 1:
                    errors[ref] = b"cannot point a branch at a non-commit object"
        if leaks:
            self._progress(refusal_text(list(leaks.values())))
        if big:
            limit = f"{self.limits.max_blob_bytes / MiB:g} MiB"
            lines = [f"  - {path} (ref: {ref.decode()})" for path, ref in sorted(big.items())]
            self._progress(_LFS_HINT.format(limit=limit) + "\n".join(lines))
        return errors

    def _update_refs(self, refs, zero, graph, quarantine):
        if quarantine is not None and free_bytes(self.repo.path) < REF_RESERVE:
            # The pack fit, but moving refs needs room too: refuse before it is moved in.
            log.error("push to %s: out of disk space before moving refs", self.repo.path)
            for _, _, ref in refs:
                yield (ref, NO_SPACE_REASON)
            return
        errors = self._precheck(refs, zero, graph)
        atomic = self.has_capability(CAPABILITY_ATOMIC)
        if atomic and errors:
            yield from atomic_failed(refs, errors)
            return
        yield from update_refs(
            self.repo,
            refs,
            errors,
            zero=zero,
            atomic=atomic,
            stale_lock_seconds=self.limits.stale_lock_seconds,
            before_swap=quarantine.migrate if quarantine is not None else _nothing,
        )

    def _on_post_receive(self, client_refs) -> None:
        """After refs moved: the audit, then a repack in the background if one is due."""
        metrics.push_landed(len(client_refs))
        if self._on_push is not None:
            self._on_push(list(client_refs))
        scheduler.after_push(self.repo.path, self.limits.maintenance)


def _membership(store) -> Callable[[bytes], bool]:
    """Whether the repository holds an object, for the thousands of unchanged files a
    push's trees name.

    dulwich's own test stats the pack directory and walks its pack cache for each
    object (a push to a 3,000-file tree tests each file once, and this was a third of
    its time); here the pack indexes of the moment are searched directly, and only an
    object none of them holds goes to dulwich: loose objects, a pack that appeared
    since, or one a concurrent repack removed (dulwich rescans).
    """
    indexes = []
    for pack in store.packs:
        try:
            indexes.append(pack.index)  # read on first use
        except PackFileDisappeared:
            continue  # gone since it was listed (a repack's temporary pack, say)

    def contains(sha: bytes) -> bool:
        binary = hex_to_sha(sha)
        for index in indexes:
            try:
                index.object_offset(binary)
            except KeyError:
                continue
            except PackFileDisappeared:
                break
            return True
        return sha in store

    return contains


def _kind(sha: bytes, graph: PackGraph, store) -> int:
    if sha in graph.kinds:
        return graph.kinds[sha]
    return store.get_raw(sha)[0]


def _leak_reason(commit: bytes, path: str, count: int) -> bytes:
    """The ``ng`` reason for a ref whose history leaks a token: one line, no token."""
    more = f" and {count - 1} more" if count > 1 else ""
    where = path.replace("\n", " ")[:200]
    return (
        f"live access token in {where} (commit {commit.decode()[:12]}){more}: "
        "refresh that token and remove it from the history"
    ).encode("utf-8", "replace")


def _unpack_failed(refs, message: str, reason: bytes = b"unpacker error"):
    yield (b"unpack", message.replace("\n", " ").encode("utf-8", "replace"))
    for _, _, ref in refs:
        yield (ref, reason)


def _nothing() -> None:
    pass
