"""receive-pack that either lands a push whole and checked, or changes nothing.

dulwich's ``ReceivePackHandler._apply_pack`` moves the incoming pack into
``objects/pack`` before looking at it, accepts refs to objects nobody sent, ignores the
result of its compare-and-swap and reports ``ok`` anyway. Here a push goes through:

1. **Quarantine.** The pack is received into ``objects/incoming-*``, a directory that
   nothing in the repository refers to (git does the same with ``tmp_objdir``). A
   truncated or refused push is deleted with that directory.
2. **Checks, in the same pass.** The pack is indexed as dulwich's ``add_thin_pack``
   does, but every object, as it is inflated for its id, is also checked like
   ``git fsck`` would (commits, trees and tags parsed in full, blobs by size; the few
   ``.gitmodules`` blobs read back at the end), so no object is inflated twice. Then
   every new tip must be connected: each object it reaches is in the pack or already
   in the repository. Blobs over the size limit are refused with a pointer to Git LFS.
3. **Under the repository lock** (``flock`` on the repository directory, shared by every
   worker process and thread): the refs are compared with the old values the client
   saw, the pack is moved in, and the refs are swapped. ``atomic`` pushes update all
   refs or none.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import stat
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field

from dulwich.config import ConfigFile
from dulwich.errors import (
    ApplyDeltaError,
    ChecksumMismatch,
    GitProtocolError,
    ObjectFormatException,
)
from dulwich.file import FileLocked, GitFile
from dulwich.object_format import ObjectFormat
from dulwich.object_store import PACK_MODE, PackInputTooLarge
from dulwich.objects import (
    S_IFGITLINK,
    Blob,
    Commit,
    ObjectID,
    ShaFile,
    Tag,
    Tree,
    parse_tree,
    sha_to_hex,
)
from dulwich.pack import (
    Pack,
    PackData,
    PackIndexer,
    PackStreamCopier,
    UnpackedObject,
    UnresolvedDeltas,
    extend_pack,
    iter_sha1,
    write_pack_index,
)
from dulwich.protocol import CAPABILITY_ATOMIC, SIDE_BAND_CHANNEL_PROGRESS
from dulwich.refs import Ref, check_ref_format
from dulwich.repo import Repo
from dulwich.server import ReceivePackHandler

from ..config import MiB, Settings
from .body import BodyError

log = logging.getLogger(__name__)

QUARANTINE_PREFIX = "incoming-"
#: How long a push waits for another push to the same repository to finish.
LOCK_WAIT_SECONDS = 30.0
_LFS_HINT = (
    "Your push was rejected because it contains files larger than {limit}.\n"
    "Please use Git LFS to store large files: git lfs track <file>, commit, and push again.\n"
    "Offending files:\n"
)


@dataclass(frozen=True)
class PushLimits:
    max_pack_bytes: int
    max_blob_bytes: int
    max_ref_updates: int
    stale_lock_seconds: int

    @classmethod
    def from_settings(cls, settings: Settings) -> PushLimits:
        return cls(
            max_pack_bytes=settings.max_pack_bytes,
            max_blob_bytes=settings.max_blob_bytes,
            max_ref_updates=settings.max_ref_updates,
            stale_lock_seconds=settings.stale_lock_seconds,
        )


class PackRejected(Exception):
    """The pack as a whole cannot be accepted; the message goes to ``unpack``."""


# --- quarantine ---------------------------------------------------------------------


class Quarantine:
    """A throwaway directory inside ``objects/`` that holds the pack until it is checked.

    Nothing in the repository refers to it: a refused or broken push leaves only this
    directory, and :meth:`close` deletes it.
    """

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self.path = tempfile.mkdtemp(prefix=QUARANTINE_PREFIX, dir=repo.object_store.path)
        self.pack: Pack | None = None

    def receive(
        self, read: Callable[[int], bytes], recv, max_bytes: int, checker: PackChecker
    ) -> Pack:
        """Copy the pack from the wire, then index *and* check it in one pass.

        This is dulwich's ``add_thin_pack`` with :class:`CheckingIndexer` in place of
        its indexer, and without the second pass of ``_complete_pack`` that inflates
        every object again only to see that it parses: the checker parses (strictly)
        every commit, tree and tag, and blobs always parse. Each object is inflated
        once for its id and checked while it is at hand. Bases of a thin pack come from
        the repository and are appended, as git's ``index-pack --fix-thin`` does.
        """
        store = self.repo.object_store
        object_format = store.object_format
        read, recv = _bounded(read, recv, max_bytes)
        fd, path = tempfile.mkstemp(dir=self.path, prefix="tmp_pack_")
        with os.fdopen(fd, "w+b") as f:
            indexer = CheckingIndexer(
                f, object_format.hash_func, resolve_ext_ref=store.get_raw, checker=checker
            )
            copier = PackStreamCopier(object_format.hash_func, read, recv, f, delta_iter=indexer)
            copier.verify()
            f.flush()
            with PackData(path, file=f, object_format=object_format) as data:
                indexer.set_pack_data(data)
                entries = list(indexer)
            pack_sha, extra = extend_pack(
                f,
                set(indexer.ext_refs()),
                get_raw=store.get_raw,
                object_format=object_format,
                compression_level=store.pack_compression_level,
            )
        entries.extend(extra)
        entries.sort()
        base = os.path.join(self.path, "pack-" + iter_sha1(e[0] for e in entries).decode())
        os.chmod(path, PACK_MODE)
        os.rename(path, base + ".pack")
        with GitFile(base + ".idx", "wb", mask=PACK_MODE) as index_file:
            write_pack_index(index_file, entries, pack_sha, version=store.pack_index_version)
        self.pack = Pack(base, object_format=object_format)
        return self.pack

    def migrate(self) -> None:
        """Move the checked pack into the repository: ``.pack`` first, ``.idx`` last,
        so a reader that sees the index always finds its pack."""
        if self.pack is None or len(self.pack) == 0:
            return
        self.pack.close()
        target = self.repo.object_store.pack_dir
        names = sorted(os.listdir(self.path), key=lambda name: name.endswith(".idx"))
        for name in names:
            if name.endswith((".pack", ".idx")) and not os.path.exists(os.path.join(target, name)):
                os.rename(os.path.join(self.path, name), os.path.join(target, name))

    def close(self) -> None:
        if self.pack is not None:
            self.pack.close()
        shutil.rmtree(self.path, ignore_errors=True)


def _bounded(read: Callable[[int], bytes], recv, max_bytes: int):
    """``read``/``recv`` that raise :class:`PackInputTooLarge` past ``max_bytes`` in all
    (0: no limit, as git's ``receive.maxInputSize``)."""
    if not max_bytes:
        return read, recv
    total = 0

    def counted(function: Callable[[int], bytes]) -> Callable[[int], bytes]:
        def wrapper(size: int) -> bytes:
            nonlocal total
            data = function(size)
            total += len(data)
            if total > max_bytes:
                raise PackInputTooLarge(f"pack exceeds maximum input size of {max_bytes} bytes")
            return data

        return wrapper

    return counted(read), (counted(recv) if recv is not None else None)


# --- object checks ------------------------------------------------------------------


_DIR_MODE = 0o040000
_VALID_MODES = {_DIR_MODE, 0o100644, 0o100755, 0o120000, S_IFGITLINK, 0o100664}


def _is_dotgit(name: bytes) -> bool:
    """``.git`` as any filesystem might read it: case-folded, NTFS 8.3, trailing dots."""
    folded = name.lower().rstrip(b". ")
    return folded in (b".git", b"git~1")


def _is_gitmodules(name: bytes) -> bool:
    return name.lower().rstrip(b". ") in (b".gitmodules", b"gitmod~1")


@dataclass
class PackGraph:
    """What the checks learned about the objects of one pack."""

    kinds: dict[bytes, int] = field(default_factory=dict)
    #: object -> (child, name in a tree or b"") for every object the pack holds.
    links: dict[bytes, list[tuple[bytes, bytes]]] = field(default_factory=dict)
    big_blobs: set[bytes] = field(default_factory=set)


def check_tree(sha: bytes, raw: bytes, oid_length: int, gitmodules: set[bytes]):
    """Check a tree like ``git fsck`` and return its ``(child, name)`` links.

    One strict parse does the work of dulwich's ``Tree.check`` (which parses the tree
    twice more) plus the checks git adds: ``.git`` in any spelling, ``.gitmodules``
    that is a symlink. Names of ``.gitmodules`` blobs are collected in ``gitmodules``.
    """
    what = f"tree {sha.decode()}"
    try:
        entries = parse_tree(raw, oid_length, strict=True)
    except ValueError as error:  # ObjectFormatException is a ValueError too
        raise ObjectFormatException(f"{what}: {error}") from None
    names: list[bytes] = []
    keys: list[bytes] = []
    children: list[tuple[bytes, bytes]] = []
    for name, mode, child in entries:
        if mode not in _VALID_MODES:
            raise ObjectFormatException(f"{what}: invalid mode {mode:06o}")
        if not name or name in (b".", b"..") or b"/" in name:
            raise ObjectFormatException(f"{what}: invalid entry name {name!r}")
        if name[:1] in b".gG":  # the only first letters of .git, git~1, .gitmodules, gitmod~1
            if _is_dotgit(name):
                raise ObjectFormatException(f"{what}: entry named {name!r}")
            if _is_gitmodules(name):
                if mode == stat.S_IFLNK:
                    raise ObjectFormatException(f"{what}: .gitmodules is a symlink")
                gitmodules.add(child)
        names.append(name)
        keys.append(name + b"/" if mode == _DIR_MODE else name)
        if mode != S_IFGITLINK:  # a submodule's commit lives in another repository
            children.append((child, name))
    if len(set(names)) != len(names):
        raise ObjectFormatException(f"{what}: duplicate entries")
    if keys != sorted(keys):
        raise ObjectFormatException(f"{what}: entries not sorted")
    return children


def check_gitmodules(sha: bytes, data: bytes) -> None:
    """Refuse option-like submodule URLs and paths (CVE-2018-17456 and friends)."""
    try:
        config = ConfigFile.from_file(_BytesReader(data))
    except Exception:
        raise ObjectFormatException(f"blob {sha.decode()}: unparsable .gitmodules") from None
    for section in config.sections():
        if not section or section[0] != b"submodule":
            continue
        name = section[1] if len(section) > 1 else b""
        if b".." in name.replace(b"\\", b"/").split(b"/"):
            raise ObjectFormatException(f".gitmodules: invalid submodule name {name!r}")
        for key in (b"url", b"path"):
            try:
                value = config.get(section, key)
            except KeyError:
                continue
            if value.lstrip().startswith(b"-") or b"\n" in value:
                raise ObjectFormatException(
                    f".gitmodules: submodule {name!r} has an option-like {key.decode()}"
                )


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._lines = data.splitlines(keepends=True)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._lines)

    def readlines(self) -> list[bytes]:
        return self._lines


class PackChecker:
    """Checks each object of a pack as the indexer inflates it.

    Commits, trees and tags are parsed and checked in full; blobs only by size, so
    their content is never kept or parsed. ``.gitmodules`` blobs are known by the tree
    entries that name them, which may come after the blob in the pack: :meth:`finish`
    reads those few back from the finished pack.
    """

    def __init__(self, object_format: ObjectFormat, max_blob_bytes: int) -> None:
        self.object_format = object_format
        self.max_blob_bytes = max_blob_bytes
        self.graph = PackGraph()
        self.gitmodules: set[bytes] = set()

    def add(self, sha: bytes, type_num: int, chunks: list[bytes]) -> None:
        """Check one object; raise :class:`PackRejected` if it is malformed."""
        try:
            self._add(sha, type_num, chunks)
        except (ObjectFormatException, ValueError, KeyError, AssertionError) as error:
            raise PackRejected(f"bad object: {error}") from None

    def _add(self, sha: bytes, type_num: int, chunks: list[bytes]) -> None:
        graph = self.graph
        graph.kinds[sha] = type_num
        if type_num == Blob.type_num:
            if sum(map(len, chunks)) > self.max_blob_bytes:
                graph.big_blobs.add(sha)
        elif type_num == Tree.type_num:
            raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            graph.links[sha] = check_tree(sha, raw, self.object_format.oid_length, self.gitmodules)
        else:
            obj = ShaFile.from_raw_chunks(type_num, chunks, sha, object_format=self.object_format)
            obj.check()
            if isinstance(obj, Commit):
                graph.links[sha] = [(obj.tree, b"")] + [(parent, b"") for parent in obj.parents]
            elif isinstance(obj, Tag):
                graph.links[sha] = [(obj.object[1], b"")]

    def finish(self, get_raw: Callable[[bytes], tuple[int, bytes]]) -> PackGraph:
        """Check the ``.gitmodules`` blobs of the pack; return what was learned.

        Those over the blob limit are left to the walk, which refuses them by path.
        ``.gitmodules`` already in the repository got there through this check.
        """
        graph = self.graph
        for sha in self.gitmodules:
            if graph.kinds.get(sha) == Blob.type_num and sha not in graph.big_blobs:
                try:
                    check_gitmodules(sha, get_raw(sha)[1])
                except ObjectFormatException as error:
                    raise PackRejected(f"bad object: {error}") from None
        return graph


class CheckingIndexer(PackIndexer):
    """dulwich's pack indexer that hands every inflated object to a :class:`PackChecker`."""

    def __init__(self, *args, checker: PackChecker, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.checker = checker

    def _result(self, unpacked: UnpackedObject):
        entry = super()._result(unpacked)
        assert unpacked.obj_type_num is not None and unpacked.obj_chunks is not None
        self.checker.add(sha_to_hex(entry[0]), unpacked.obj_type_num, unpacked.obj_chunks)
        return entry


@dataclass
class TipReport:
    missing: bytes | None = None
    big_files: list[str] = field(default_factory=list)


def walk_tip(tip: bytes, graph: PackGraph, in_repo: Callable[[bytes], bool]) -> TipReport:
    """Everything reachable from ``tip`` is in the pack or in the repository.

    Objects already in the repository are taken as complete: they only ever got there
    through this same check. Paths are kept for blobs, to name files too large.
    """
    report = TipReport()
    seen: set[bytes] = set()
    pending: list[tuple[bytes, str]] = [(tip, "")]
    while pending:
        sha, path = pending.pop()
        if sha in seen:
            continue
        seen.add(sha)
        if sha in graph.kinds:
            if sha in graph.big_blobs:
                report.big_files.append(path)
            is_tree = graph.kinds[sha] == Tree.type_num
            for child, name in graph.links.get(sha, ()):
                child_path = path
                if is_tree:
                    child_path = f"{path}/{name.decode('utf-8', 'replace')}".lstrip("/")
                pending.append((child, child_path))
        elif not in_repo(sha):
            report.missing = sha
            return report
    return report


# --- locking ------------------------------------------------------------------------


class RepoBusy(Exception):
    """Another push holds the repository; the client may retry."""


@contextmanager
def repo_lock(path: str, wait: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Exclusive lock on the repository directory, across processes and threads.

    ``flock`` on a directory needs no lock file, so a crash leaves nothing behind and
    the repository's bytes stay as they were.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RepoBusy() from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)


def clear_stale_lock(lock_path: str, max_age: float) -> bool:
    """Remove a ``*.lock`` a crashed writer left; ``False`` if it may still be live.

    Called only while holding :func:`repo_lock`, so no hfgit writer owns the file; a
    young lock or one owned by another user may belong to a git process run by hand.
    """
    try:
        info = os.stat(lock_path)
    except FileNotFoundError:
        return True
    if info.st_uid != os.getuid() or time.time() - info.st_mtime < max_age:
        return False
    with suppress(FileNotFoundError):
        os.remove(lock_path)
    log.warning("removed stale lock %s (%.0f s old)", lock_path, time.time() - info.st_mtime)
    return True


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


# --- the handler --------------------------------------------------------------------


class HardenedReceivePackHandler(ReceivePackHandler):
    """receive-pack with quarantine, object and connectivity checks, and true CAS."""

    def __init__(self, *args, limits: PushLimits, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
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
                quarantine = Quarantine(self.repo)
                try:
                    checker = PackChecker(self.repo.object_format, self.limits.max_blob_bytes)
                    pack = quarantine.receive(
                        self.proto.read,
                        getattr(self.proto, "recv", None),
                        self.limits.max_pack_bytes,
                        checker,
                    )
                    graph = checker.finish(pack.get_raw)
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

    def _precheck(self, refs, zero: bytes, graph: PackGraph) -> dict[bytes, bytes]:
        """Per-ref refusals that do not depend on the current ref values."""
        errors: dict[bytes, bytes] = {}
        if len(refs) > self.limits.max_ref_updates:
            message = f"too many ref updates in one push (limit {self.limits.max_ref_updates})"
            return {ref: message.encode() for _, _, ref in refs}
        head = self.repo.refs.get_symrefs().get(b"HEAD")
        big: dict[str, bytes] = {}
        store = self.repo.object_store
        for _old, new, ref in refs:
            if not ref.startswith(b"refs/") or not check_ref_format(ref):
                errors[ref] = b"funny refname"
            elif new == zero:
                if ref == head:
                    errors[ref] = b"deletion of the current branch prohibited"
            else:
                report = walk_tip(new, graph, store.__contains__)
                if report.missing is not None:
                    errors[ref] = b"missing necessary objects"
                elif report.big_files:
                    errors[ref] = b"file too large: use git lfs track (see remote messages)"
                    for path in report.big_files:
                        big.setdefault(path, ref)
                elif ref.startswith(b"refs/heads/") and _kind(new, graph, store) != 1:
                    errors[ref] = b"cannot point a branch at a non-commit object"
        if big:
            limit = f"{self.limits.max_blob_bytes / MiB:g} MiB"
            lines = [f"  - {path} (ref: {ref.decode()})" for path, ref in sorted(big.items())]
            self._progress(_LFS_HINT.format(limit=limit) + "\n".join(lines))
        return errors

    def _update_refs(self, refs, zero, graph, quarantine):
        errors = self._precheck(refs, zero, graph)
        atomic = self.has_capability(CAPABILITY_ATOMIC)
        if atomic and errors:
            yield from _atomic_failed(refs, errors)
            return
        try:
            with repo_lock(self.repo.path):
                yield from self._update_locked(refs, zero, errors, quarantine, atomic)
        except RepoBusy:
            for _, _, ref in refs:
                yield (ref, errors.get(ref, b"another push is in progress; try again"))

    def _update_locked(self, refs, zero, errors, quarantine, atomic):
        refs_container = self.repo.refs
        for old, _new, ref in refs:
            if ref in errors:
                continue
            if not self._clear_locks(ref):
                errors[ref] = b"ref is locked by another writer; try again"
            elif _current(refs_container, ref, zero) != old:
                errors[ref] = b"fetch first" if old != zero else b"stale info"
        if atomic and errors:
            yield from _atomic_failed(refs, errors)
            return
        todo = [command for command in refs if command[2] not in errors]
        if todo and quarantine is not None and any(new != zero for _, new, _ in todo):
            quarantine.migrate()
        done: list[tuple[bytes, bytes, bytes]] = []
        for old, new, ref in todo:
            try:
                if new == zero:
                    ok = refs_container.remove_if_equals(ref, old)
                else:
                    ok = refs_container.set_if_equals(ref, old, new)
            except (FileLocked, OSError) as error:
                log.warning("ref update %s failed: %s", ref.decode("utf-8", "replace"), error)
                ok = False
                errors[ref] = b"failed to update ref; try again"
            if ok:
                done.append((old, new, ref))
            else:
                errors.setdefault(ref, b"fetch first")
                if atomic:
                    self._roll_back(done, zero)
                    yield from _atomic_failed(refs, errors)
                    return
        for _, _, ref in refs:
            yield (ref, errors.get(ref, b"ok"))

    def _clear_locks(self, ref: bytes) -> bool:
        refs = self.repo.refs
        paths = [os.fsdecode(refs.refpath(ref)) + ".lock"]
        paths.append(os.path.join(self.repo.path, "packed-refs.lock"))
        return all(clear_stale_lock(path, self.limits.stale_lock_seconds) for path in paths)

    def _roll_back(self, done, zero) -> None:
        for old, new, ref in reversed(done):
            if old == zero:
                self.repo.refs.remove_if_equals(ref, new)
            else:
                self.repo.refs.set_if_equals(ref, new, old)


def _current(refs, ref: bytes, zero: bytes) -> bytes:
    """The ref's value now, symrefs followed; ``zero`` when it does not exist."""
    try:
        return refs[ref]
    except KeyError:
        return zero


def _kind(sha: bytes, graph: PackGraph, store) -> int:
    if sha in graph.kinds:
        return graph.kinds[sha]
    return store.get_raw(sha)[0]


def _unpack_failed(refs, message: str):
    yield (b"unpack", message.replace("\n", " ").encode("utf-8", "replace"))
    for _, _, ref in refs:
        yield (ref, b"unpacker error")


def _atomic_failed(refs, errors: dict[bytes, bytes]):
    for _, _, ref in refs:
        yield (ref, errors.get(ref, b"atomic push failed"))
