"""Receiving a pushed pack: quarantined, bounded while copied, indexed and checked in one pass.

1. **Quarantine.** The pack is received into ``objects/incoming-*``, a directory that
   nothing in the repository refers to (git does the same with ``tmp_objdir``). A
   truncated or refused push is deleted with that directory.
2. **Declared sizes, while copying.** Each object's inflated size, as its header (and
   a delta's own header) declares it, is checked against ``max_object_bytes`` before
   it is inflated; a stream that inflates past what it declared is cut off there.
3. **Indexed and checked in the same pass.** The pack is indexed as dulwich's
   ``add_thin_pack`` does, but every object, as it is inflated for its id, is handed to a
   :class:`~hfgit.server.git.checks.PackChecker`, so no object is inflated again for the
   checks (the copy before inflates each stream only to find its end, keeping none).
   The indexer (:mod:`.indexer`) holds no big blob and no delta base past a budget.
"""

from __future__ import annotations

import binascii
import fcntl
import os
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator, Set
from io import BytesIO
from typing import BinaryIO

from dulwich.errors import ApplyDeltaError, ChecksumMismatch
from dulwich.file import GitFile
from dulwich.object_store import PACK_MODE, PackInputTooLarge
from dulwich.objects import Blob, Commit, Tag, Tree, sha_to_hex
from dulwich.pack import (
    DELTA_TYPES,
    OFS_DELTA,
    REF_DELTA,
    Pack,
    PackStreamCopier,
    UnpackedObject,
    compute_file_sha,
    iter_sha1,
    pack_object_header,
    read_pack_header,
    write_pack_header,
    write_pack_index,
)
from dulwich.repo import Repo

from ...config import MiB
from .bases import RepositoryObjects, delta_sizes
from .checks import PackChecker, PackRejected
from .indexer import CheckingIndexer

QUARANTINE_PREFIX = "incoming-"


class ObjectTooLarge(PackRejected):
    """An object of the pack declares an inflated size over ``max_object_bytes``."""


class Quarantine:
    """A throwaway directory inside ``objects/`` that holds the pack until it is checked.

    Nothing in the repository refers to it: a refused or broken push leaves only this
    directory, and :meth:`close` deletes it.
    """

    def __init__(self, repo: Repo) -> None:
        self.repo = repo
        self.path = tempfile.mkdtemp(prefix=QUARANTINE_PREFIX, dir=repo.object_store.path)
        # Held for the push's whole life, so the crash sweep (``sweep.py``) can tell a
        # live quarantine from one whose push was killed: the kernel drops the lock then.
        self._held = os.open(self.path, os.O_RDONLY | os.O_DIRECTORY)
        fcntl.flock(self._held, fcntl.LOCK_EX | fcntl.LOCK_NB)
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
        the repository and are appended, as git's ``index-pack --fix-thin`` does, by
        :func:`complete_thin_pack` (dulwich's ``extend_pack`` reads each whole).

        While copying, :class:`BoundedPackStreamCopier` refuses any object whose declared
        inflated size is over ``max_object_bytes`` before inflating it, so the indexing
        pass only ever inflates objects of a bounded size.
        """
        store = self.repo.object_store
        object_format = store.object_format
        read, recv = _bounded(read, recv, max_bytes)
        fd, path = tempfile.mkstemp(dir=self.path, prefix="tmp_pack_")
        with os.fdopen(fd, "w+b") as f:
            repository = RepositoryObjects(store, self.path)
            indexer = CheckingIndexer(
                f, object_format.hash_func, checker=checker, repository=repository
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
            entries = list(indexer)
            pack_sha, extra = complete_thin_pack(
                f,
                set(indexer.ext_refs()),
                repository,
                object_format,
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
        os.close(self._held)


def complete_thin_pack(
    f: BinaryIO,
    object_ids: Set[bytes],
    repository: RepositoryObjects,
    object_format,
    *,
    compression_level: int = -1,
) -> tuple[bytes, list[tuple[bytes, int, int]]]:
    """Append the bases ``object_ids`` from the repository to the pack ``f``, whole.

    Byte for byte what dulwich's ``extend_pack`` writes (same order, header and zlib
    level, so the index is the same too), but each base is inflated from the repository
    and deflated again in steps instead of being read whole: a stream fed to zlib in
    pieces deflates to the same bytes as when fed at once.
    """
    f.seek(0)
    _version, num_objects = read_pack_header(f.read)
    if object_ids:
        f.seek(0)
        write_pack_header(f.write, num_objects + len(object_ids))
        f.flush()
    pack_sha = compute_file_sha(
        f, hash_func=object_format.hash_func, end_ofs=-object_format.oid_length
    )
    f.seek(0, os.SEEK_CUR)
    entries = []
    for object_id in object_ids:
        type_num, size, chunks = repository.stream(object_id)
        offset = f.tell()
        header = bytes(pack_object_header(type_num, None, size, object_format=object_format))
        crc32 = _write_hashed(f, header, pack_sha, 0)
        compressor = zlib.compressobj(level=compression_level)
        for chunk in chunks:
            crc32 = _write_hashed(f, compressor.compress(chunk), pack_sha, crc32)
        crc32 = _write_hashed(f, compressor.flush(), pack_sha, crc32)
        entries.append((object_id, offset, crc32 & 0xFFFFFFFF))
    digest = pack_sha.digest()
    f.write(digest)
    return digest, entries


def _write_hashed(f: BinaryIO, data: bytes, pack_sha, crc32: int) -> int:
    f.write(data)
    pack_sha.update(data)
    return binascii.crc32(data, crc32)


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
            try:
                target_size = delta_sizes(head)[1]
            except ApplyDeltaError:
                raise PackRejected(f"bad object at offset {offset}: bad delta header") from None
            self._check_size(target_size, offset)
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
