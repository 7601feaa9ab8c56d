"""receive-pack that either lands a push whole and checked, or changes nothing.

dulwich's ``ReceivePackHandler._apply_pack`` moves the incoming pack into
``objects/pack`` before looking at it, accepts refs to objects nobody sent, ignores the
result of its compare-and-swap and reports ``ok`` anyway. Here a push goes through:

1. **Quarantine.** The pack is received into ``objects/incoming-*``, a directory that
   nothing in the repository refers to (git does the same with ``tmp_objdir``). A
   truncated or refused push is deleted with that directory.
2. **Declared sizes, while copying.** Each object's inflated size, as its header (and
   a delta's own header) declares it, is checked against ``max_object_bytes`` before
   it is inflated; a stream that inflates past what it declared is cut off there.
3. **Checks, in the same pass.** The pack is indexed as dulwich's ``add_thin_pack``
   does, but every object, as it is inflated for its id, is also checked like
   ``git fsck`` would (commits, trees and tags parsed in full, blobs by size; the few
   ``.gitmodules`` blobs read back at the end), so no object is inflated again for the
   checks (the copy before inflates each stream only to find its end, keeping none). Then
   every new tip must be connected: each object it reaches is in the pack or already
   in the repository. Blobs over the size limit are refused with a pointer to Git LFS.
4. **Under the repository lock** (``flock`` on the repository directory, shared by every
   worker process and thread): the refs are compared with the old values the client
   saw, the pack is moved in, and the refs are swapped. ``atomic`` pushes update all
   refs or none.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import stat
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from io import BytesIO

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
    DELTA_TYPES,
    OFS_DELTA,
    REF_DELTA,
    Pack,
    PackData,
    PackIndexer,
    PackStreamCopier,
    UnpackedObject,
    UnresolvedDeltas,
    extend_pack,
    iter_sha1,
    read_pack_header,
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
    max_object_bytes: int
    max_ref_updates: int
    stale_lock_seconds: int

    @classmethod
    def from_settings(cls, settings: Settings) -> PushLimits:
        return cls(
            max_pack_bytes=settings.max_pack_bytes,
            max_blob_bytes=settings.max_blob_bytes,
            max_object_bytes=settings.max_object_bytes,
            max_ref_updates=settings.max_ref_updates,
            stale_lock_seconds=settings.stale_lock_seconds,
        )


class PackRejected(Exception):
    """The pack as a whole cannot be accepted; the message goes to ``unpack``."""


class ObjectTooLarge(PackRejected):
    """An object of the pack declares an inflated size over ``max_object_bytes``."""


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
        self,
        read: Callable[[int], bytes],
        recv,
        checker: PackChecker,
        *,
        max_bytes: int,
        max_object_bytes: int,
    ) -> Pack:
        """Copy the pack from the wire, then index *and* check it in one pass.

        This is dulwich's ``add_thin_pack`` with :class:`CheckingIndexer` in place of
        its indexer, and without the second pass of ``_complete_pack`` that inflates
        every object again only to see that it parses: the checker parses (strictly)
        every commit, tree and tag, and blobs always parse. Each object is inflated
        once for its id and checked while it is at hand. Bases of a thin pack come from
        the repository and are appended, as git's ``index-pack --fix-thin`` does.

        While copying, :class:`BoundedPackStreamCopier` refuses any object whose declared
        inflated size is over ``max_object_bytes`` before inflating it, so the indexing
        pass only ever inflates objects of a bounded size.
        """
        store = self.repo.object_store
        object_format = store.object_format
        read, recv = _bounded(read, recv, max_bytes)
        fd, path = tempfile.mkstemp(dir=self.path, prefix="tmp_pack_")
        with os.fdopen(fd, "w+b") as f:
            indexer = CheckingIndexer(
                f, object_format.hash_func, resolve_ext_ref=store.get_raw, checker=checker
            )
            copier = BoundedPackStreamCopier(
                object_format.hash_func,
                read,
                recv,
                f,
                delta_iter=indexer,
                max_object_bytes=max_object_bytes,
            )
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


#: Most bytes one step of inflating the wire stream produces: the copy keeps none of it.
_INFLATE_STEP = 1 * MiB
_READ_SIZE = 64 * 1024
#: A delta starts with its base and target sizes, two varints of at most 10 bytes each.
_DELTA_HEAD = 20
_OBJECT_TYPES = {Commit.type_num, Tree.type_num, Blob.type_num, Tag.type_num}


class BoundedPackStreamCopier(PackStreamCopier):
    """dulwich's ``PackStreamCopier`` that bounds each object's inflated size.

    dulwich inflates every object whole into memory while copying, only to find where
    its zlib stream ends, and trusts its declared size while doing so: one object of
    zeros that compresses a thousandfold (a "zlib bomb") is bounded only by the pack
    size. Here the object header's declared size (for a delta, also the target size at
    the start of the delta) is checked against ``max_object_bytes`` before anything is
    inflated; the stream is then inflated in steps of :data:`_INFLATE_STEP` and thrown
    away, and one that inflates to more or fewer bytes than it declared is refused.
    The indexing pass reads the very same bytes back, so it inflates nothing larger.
    """

    def __init__(self, *args, max_object_bytes: int, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.max_object_bytes = max_object_bytes

    def read_objects(self, compute_crc32: bool = False) -> Iterator[UnpackedObject]:
        _version, self._num_objects = read_pack_header(self.read)
        for _ in range(self._num_objects):
            yield self._read_object()
        if self._buf_len() < self._hash_size:
            self.read(self._hash_size)  # the rest of the trailer, as dulwich does
        pack_sha = bytes(self._trailer)
        if pack_sha != self.sha.digest():
            raise ChecksumMismatch(sha_to_hex(pack_sha), self.sha.hexdigest())

    def _read_object(self) -> UnpackedObject:
        """Read one object's header and zlib stream; what the indexer needs to record it."""
        offset = self.offset
        raw = self._varint_bytes(offset)
        type_num = (raw[0] >> 4) & 0x07
        size = raw[0] & 0x0F
        for index, byte in enumerate(raw[1:]):
            size += (byte & 0x7F) << (index * 7 + 4)
        delta_base: int | bytes | None = None
        if type_num == OFS_DELTA:
            raw = self._varint_bytes(offset)
            delta_base = raw[0] & 0x7F
            for byte in raw[1:]:
                delta_base = ((delta_base + 1) << 7) + (byte & 0x7F)
            if not 0 < delta_base <= offset - 12:  # a base before this, after the header
                raise PackRejected(f"bad object at offset {offset}: bad delta base offset")
        elif type_num == REF_DELTA:
            delta_base = self.read(self._hash_size)
        elif type_num not in _OBJECT_TYPES:
            raise PackRejected(f"bad object at offset {offset}: unknown type {type_num}")
        self._check_size(size, offset)
        head = self._inflate(size, offset, keep=_DELTA_HEAD if type_num in DELTA_TYPES else 0)
        if type_num in DELTA_TYPES:
            self._check_size(_delta_target_size(head, offset), offset)
        unpacked = UnpackedObject(
            type_num, delta_base=delta_base, decomp_len=size, hash_func=self.hash_func
        )
        unpacked.offset = offset
        return unpacked

    def _varint_bytes(self, offset: int) -> list[int]:
        """The bytes of one header varint (dulwich's ``take_msb_bytes``, bounded)."""
        raw: list[int] = []
        while not raw or raw[-1] & 0x80:
            byte = self.read(1)
            if not byte:
                raise EOFError("pack ends inside an object header")
            if len(raw) == 16:
                raise PackRejected(f"bad object at offset {offset}: bad header")
            raw.append(byte[0])
        return raw

    def _check_size(self, size: int, offset: int) -> None:
        limit = self.max_object_bytes
        if size > limit:
            raise ObjectTooLarge(
                f"object at offset {offset} inflates to {size / MiB:.0f} MiB, over the"
                f" {limit / MiB:g} MiB limit for one object (max_object_bytes);"
                " store large files with Git LFS"
            )

    def _inflate(self, size: int, offset: int, keep: int) -> bytes:
        """Inflate one zlib stream of ``size`` bytes; return its first ``keep`` bytes.

        The data left over past the stream's end goes back into the read buffer, as
        dulwich's ``read_objects`` does with ``unpack_object``'s leftovers.
        """
        inflater = zlib.decompressobj()
        total = 0
        head = b""
        pending = b""
        while not inflater.eof:
            if not pending:
                pending = self.recv(_READ_SIZE)
                if not pending:
                    raise zlib.error("EOF before end of zlib stream")
            out = inflater.decompress(pending, _INFLATE_STEP)
            pending = inflater.unconsumed_tail
            total += len(out)
            if total > size:
                raise PackRejected(
                    f"bad object at offset {offset}: inflates to more than its declared"
                    f" {size} bytes"
                )
            if len(head) < keep:
                head += out[: keep - len(head)]
        if total != size:
            raise PackRejected(
                f"bad object at offset {offset}: inflates to {total} bytes, not its declared {size}"
            )
        buffer = BytesIO()
        buffer.write(inflater.unused_data)
        buffer.write(self._rbuf.read())
        buffer.seek(0)
        self._rbuf = buffer
        return head


def _delta_target_size(head: bytes, offset: int) -> int:
    """The target size a delta declares: its second varint, after the base size."""
    position = 0
    value = 0
    for _ in range(2):
        value = shift = 0
        while True:
            if position >= len(head):
                raise PackRejected(f"bad object at offset {offset}: bad delta header")
            byte = head[position]
            position += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
    return value


# --- object checks ------------------------------------------------------------------


_DIR_MODE = 0o040000
_VALID_MODES = {_DIR_MODE, 0o100644, 0o100755, 0o120000, S_IFGITLINK, 0o100664}


#: Code points HFS+ ignores when it compares names (git's ``next_hfs_char``).
_HFS_IGNORED = dict.fromkeys(
    [*range(0x200C, 0x2010), *range(0x202A, 0x202F), *range(0x206A, 0x2070), 0xFEFF]
)


def _hfs_name(name: bytes) -> str:
    """The name as HFS+ compares it: ignorable code points dropped.

    Like git, a malformed UTF-8 sequence ends the name, so ``.git`` followed by one
    still counts as ``.git``.
    """
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError as error:
        text = name[: error.start].decode("utf-8")
    return text.translate(_HFS_IGNORED)


def _ntfs_short_names(word: bytes, prefix: bytes) -> bytes:
    """NTFS 8.3 names a file ``.<word>`` may get: ``gitmod~1``..``~4``, or the hashed
    fall-back (``prefix`` cut to 0-6 characters, ``~``, digits: 8 characters)."""
    hashed = (re.escape(prefix[:k]) + b"~[1-9][0-9]{%d}" % (6 - k) for k in range(7))
    return b"|".join([re.escape(word[:6]) + b"~[1-4]", *hashed])


# NTFS ignores trailing spaces and periods, and ``:`` starts an alternate data stream
# (``.git::$INDEX_ALLOCATION`` is the directory ``.git``); git's ``is_ntfs_dotgit`` and
# ``is_ntfs_dotgitmodules``. ASCII case-insensitive, as NTFS and git compare these.
_NTFS_DOTGIT = re.compile(rb"(?:\.git|git~1)[ .]*(?:[:\\].*)?", re.IGNORECASE | re.DOTALL)
_NTFS_DOTGITMODULES = re.compile(
    rb"(?:\.gitmodules|" + _ntfs_short_names(b"gitmodules", b"gi7eba") + rb")[ .]*(?::.*)?",
    re.IGNORECASE | re.DOTALL,
)
#: First bytes of every name the checks below can match (a name starting otherwise is
#: skipped cheaply): ``.``, ``g``/``G``, ``~`` and the UTF-8 lead bytes of the HFS+
#: ignorable code points.
_SUSPECT_FIRST = frozenset(b".gG~\xe2\xef")


def _is_dotgit(name: bytes) -> bool:
    """``.git`` as any filesystem might read it (git's ``is_hfs_dotgit``/``is_ntfs_dotgit``)."""
    hfs = _hfs_name(name)
    return (hfs.isascii() and hfs.lower() == ".git") or bool(_NTFS_DOTGIT.fullmatch(name))


def _is_gitmodules(name: bytes) -> bool:
    """``.gitmodules`` as any filesystem might read it, 8.3 short names included."""
    hfs = _hfs_name(name)
    return (hfs.isascii() and hfs.lower() == ".gitmodules") or bool(
        _NTFS_DOTGITMODULES.fullmatch(name)
    )


def _show(name: bytes) -> str:
    """A tree entry name for a message: quoted, ASCII, invisible characters escaped."""
    return ascii(name.decode("utf-8", "backslashreplace"))


@dataclass
class PackGraph:
    """What the checks learned about the objects of one pack."""

    kinds: dict[bytes, int] = field(default_factory=dict)
    #: object -> (child, name in a tree or b"") for every object the pack holds.
    links: dict[bytes, list[tuple[bytes, bytes]]] = field(default_factory=dict)
    big_blobs: set[bytes] = field(default_factory=set)


def check_tree(sha: bytes, raw: bytes, oid_length: int, gitmodules: dict[bytes, bytes]):
    """Check a tree like ``git fsck`` and return its ``(child, name)`` links.

    One strict parse does the work of dulwich's ``Tree.check`` (which parses the tree
    twice more) plus the checks git adds: ``.git`` in any spelling (HFS+, NTFS),
    ``.gitmodules`` (in any spelling) that is a symlink. ``.gitmodules`` blobs are
    collected in ``gitmodules``, with the entry name that makes them one.
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
            raise ObjectFormatException(f"{what}: invalid entry name {_show(name)}")
        if name[0] in _SUSPECT_FIRST:
            if _is_dotgit(name):
                raise ObjectFormatException(
                    f"{what}: entry {_show(name)} is .git on some filesystem"
                )
            if _is_gitmodules(name):
                if mode == stat.S_IFLNK:
                    raise ObjectFormatException(
                        f"{what}: entry {_show(name)} is a .gitmodules that is a symlink"
                    )
                gitmodules.setdefault(child, name)
        names.append(name)
        keys.append(name + b"/" if mode == _DIR_MODE else name)
        if mode != S_IFGITLINK:  # a submodule's commit lives in another repository
            children.append((child, name))
    if len(set(names)) != len(names):
        raise ObjectFormatException(f"{what}: duplicate entries")
    if keys != sorted(keys):
        raise ObjectFormatException(f"{what}: entries not sorted")
    return children


def check_gitmodules(sha: bytes, data: bytes, name: bytes = b".gitmodules") -> None:
    """Refuse option-like submodule URLs and paths (CVE-2018-17456 and friends).

    ``name`` is the tree entry that makes the blob a ``.gitmodules``, for the message.
    """
    what = f".gitmodules blob {sha.decode()} (entry {_show(name)})"
    try:
        config = ConfigFile.from_file(_BytesReader(data))
    except Exception:
        raise ObjectFormatException(f"{what}: unparsable") from None
    for section in config.sections():
        if not section or section[0] != b"submodule":
            continue
        submodule = section[1] if len(section) > 1 else b""
        if b".." in submodule.replace(b"\\", b"/").split(b"/"):
            raise ObjectFormatException(f"{what}: invalid submodule name {_show(submodule)}")
        for key in (b"url", b"path"):
            try:
                value = config.get(section, key)
            except KeyError:
                continue
            if value.lstrip().startswith(b"-") or b"\n" in value:
                raise ObjectFormatException(
                    f"{what}: submodule {_show(submodule)} has an option-like {key.decode()}"
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
        #: ``.gitmodules`` blob -> the tree entry name that makes it one.
        self.gitmodules: dict[bytes, bytes] = {}

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
        for sha, name in self.gitmodules.items():
            if graph.kinds.get(sha) == Blob.type_num and sha not in graph.big_blobs:
                try:
                    check_gitmodules(sha, get_raw(sha)[1], name)
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
                        checker,
                        max_bytes=self.limits.max_pack_bytes,
                        max_object_bytes=self.limits.max_object_bytes,
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
