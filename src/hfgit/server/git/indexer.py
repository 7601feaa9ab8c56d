"""The indexing pass over a received pack, in memory that does not grow with the objects.

dulwich's ``PackIndexer`` inflates every object whole, keeps every delta base whole
while deltas against it wait, and reads the pack through an ``mmap`` of the whole file.
A push of a 95 MiB file then costs the worker twice that, and a delta against it three
times. :class:`CheckingIndexer` keeps dulwich's order (each object inflated once, bases
before their deltas) and its fast path for small objects, but:

- reads the pack through the file, so the pages it read are the kernel's to drop;
- hashes a blob over :data:`STREAM_BYTES` while it inflates it, in 1 MiB steps, and
  keeps none of it (the checks of a blob need its size, and the token scan of
  :mod:`hfgit.leaks` reads the same steps as they go by);
- keeps a delta base in memory only while the bases held add up to at most
  :data:`BASE_BUDGET` (git's ``core.deltaBaseCacheLimit`` in spirit); any other base is
  written to a file in the quarantine and read back piecewise by the deltas against it,
  which are applied as a stream, and the file is deleted once its last delta is done;
- takes the bases of a thin pack from :class:`~.bases.RepositoryObjects`, in steps
  (dulwich's ``get_raw`` inflates them whole), held or spilled by the same budget.

Commits, trees and tags are still held whole while they are checked (they must be
parsed), and the delta instructions of one object are held while it is applied; both
are bounded by ``max_object_bytes`` before anything is inflated.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import IO

from dulwich.errors import ApplyDeltaError
from dulwich.objects import Blob, object_class, sha_to_hex
from dulwich.pack import PackIndexer, UnpackedObject, apply_delta

from ...config import MiB
from ...leaks import TokenScanner
from .bases import (
    Base,
    Inflating,
    RepositoryObjects,
    apply_delta_streaming,
    delta_sizes,
    read_header,
    spill_file,
)
from .checks import PackChecker

#: Blobs larger than this are hashed as a stream, never held whole.
STREAM_BYTES = 8 * MiB
#: Most bytes of delta bases held in memory at once; the others wait in files.
BASE_BUDGET = 32 * MiB


class _Sink:
    """Where a streamed object goes: its hash, a scan for tokens if it is a blob, and a
    file or chunks when someone needs it."""

    def __init__(
        self,
        hash_func,
        type_num: int,
        size: int,
        file: IO[bytes] | None,
        keep: bool,
        scan: bool,
    ):
        self.sha = hash_func()
        self.sha.update(object_class(type_num).type_name + b" %d\x00" % size)
        self.file = file
        self.chunks: list[bytes] | None = [] if keep else None
        self.scanner = TokenScanner() if scan else None
        self.length = 0

    def write(self, data: bytes) -> None:
        self.sha.update(data)
        if self.scanner is not None:
            self.scanner.feed(data)
        self.length += len(data)
        if self.file is not None:
            self.file.write(data)
        if self.chunks is not None:
            self.chunks.append(data)


class CheckingIndexer(PackIndexer):
    """dulwich's pack indexer, bounded in memory, that hands every object to a checker."""

    def __init__(
        self, *args, checker: PackChecker, repository: RepositoryObjects, **kwargs
    ) -> None:
        super().__init__(*args, resolve_ext_ref=repository.stream, **kwargs)
        self.checker = checker
        self.spill_dir = repository.spill_dir
        self._held = 0

    def _result(self, unpacked: UnpackedObject):
        entry = super()._result(unpacked)
        assert unpacked.obj_type_num is not None and unpacked.obj_chunks is not None
        self.checker.add(sha_to_hex(entry[0]), unpacked.obj_type_num, unpacked.obj_chunks)
        return entry

    # The walk: dulwich's, with bases that count against the budget.

    def _follow_chain(self, offset: int, obj_type_num: int, base_chunks) -> Iterator:
        base = None if base_chunks is None else self._hold(base_chunks, 1)
        yield from self._walk([(offset, obj_type_num, base)])

    def _walk_ref_chains(self) -> Iterator:
        if not self._resolve_ext_ref:
            self._ensure_no_pending()
            return
        for base_sha, pending in sorted(self._pending_ref.items()):
            if base_sha not in self._pending_ref:
                continue
            try:
                type_num, size, chunks = self._resolve_ext_ref(base_sha)
            except KeyError:
                continue  # may be an object of the pack, resolved later
            self._ext_refs.append(base_sha)
            self._pending_ref.pop(base_sha)
            base = self._hold_stream(size, chunks, len(pending))
            yield from self._walk([(offset, type_num, base) for offset in pending])
        self._ensure_no_pending()

    def _walk(self, todo: list[tuple[int, int, Base | None]]) -> Iterator:
        while todo:
            offset, type_num, base = todo.pop()
            might_be_base = bool(self._pending_ofs.get(offset) or self._pending_ref)
            entry, content = self._resolve(offset, type_num, base, might_be_base)
            if base is not None:
                self._release(base)
            yield entry
            children = [*self._pending_ofs.pop(offset, []), *self._pending_ref.pop(entry[0], [])]
            if children:
                held = content if isinstance(content, Base) else self._hold(content, 0)
                held.users = len(children)
                todo.extend((child, type_num, held) for child in children)
            elif isinstance(content, Base):
                content.close()

    def _hold(self, content, users: int) -> Base:
        """Keep ``content`` for ``users`` deltas: in memory within the budget, else in a file."""
        data = content if isinstance(content, bytes) else b"".join(content)
        if self._held + len(data) <= BASE_BUDGET:
            self._held += len(data)
            return Base(users, len(data), data, None)
        with self._spill_file() as file:
            file.write(data)
        return Base(users, len(data), None, file.name)

    def _hold_stream(self, size: int, chunks: Iterator[bytes], users: int) -> Base:
        """:meth:`_hold` for content that arrives in steps: a file is written as it comes."""
        if self._held + size <= BASE_BUDGET:
            return self._hold(b"".join(chunks), users)
        with self._spill_file() as file:
            for chunk in chunks:
                file.write(chunk)
        return Base(users, size, None, file.name)

    def _release(self, base: Base) -> None:
        base.users -= 1
        if base.users <= 0:
            if base.data is not None:
                self._held -= base.size
            base.close()

    def _spill_file(self) -> IO[bytes]:
        return spill_file(self.spill_dir)

    # One object

    def _resolve(self, offset: int, type_num: int, base: Base | None, might_be_base: bool):
        """Index and check one object: ``(entry, content)``, content as chunks or a file."""
        assert self._file is not None
        pack_type, size, data_at, header = self._header(offset)
        if base is None:
            if pack_type != Blob.type_num or size <= STREAM_BYTES:
                unpacked = self._resolve_object(offset, type_num, None)
                return self._result(unpacked), unpacked.obj_chunks
            return self._stream_whole(offset, size, data_at, header, might_be_base)
        delta, crc32 = self._inflate(data_at, size, header)
        base_size, target_size, position = delta_sizes(delta)
        if base_size != base.size:
            raise ApplyDeltaError(f"delta expects a base of {base_size} bytes, not {base.size}")
        if base.data is not None and (type_num != Blob.type_num or target_size <= STREAM_BYTES):
            chunks = apply_delta(base.data, delta)
            if type_num != Blob.type_num and not sum(map(len, chunks)):
                raise ApplyDeltaError(f"delta resolved to empty payload for type {type_num}")
            unpacked = UnpackedObject(
                pack_type, delta_base=None, decomp_len=size, crc32=crc32, hash_func=self.hash_func
            )
            unpacked.offset = offset
            unpacked.obj_type_num = type_num
            unpacked.obj_chunks = chunks
            return self._result(unpacked), chunks
        spill = type_num == Blob.type_num and might_be_base
        keep = type_num != Blob.type_num
        file = self._spill_file() if spill else None
        try:
            scan = self.checker.scan_tokens and type_num == Blob.type_num
            sink = _Sink(self.hash_func, type_num, target_size, file, keep, scan)
            apply_delta_streaming(base, delta, position, target_size, sink)
        finally:
            if file is not None:
                file.close()
        del delta
        if keep and not target_size:
            raise ApplyDeltaError(f"delta resolved to empty payload for type {type_num}")
        return self._finish(offset, type_num, target_size, sink, crc32, file)

    def _stream_whole(self, offset: int, size: int, data_at: int, header: bytes, spill: bool):
        file = self._spill_file() if spill else None
        try:
            sink = _Sink(
                self.hash_func, Blob.type_num, size, file, keep=False, scan=self.checker.scan_tokens
            )
            crc32 = self._inflate_to(data_at, size, header, sink.write)
        finally:
            if file is not None:
                file.close()
        return self._finish(offset, Blob.type_num, size, sink, crc32, file)

    def _finish(self, offset, type_num, size, sink: _Sink, crc32, file):
        sha = sink.sha.digest()
        if sink.chunks is not None:
            self.checker.add(sha_to_hex(sha), type_num, sink.chunks)
        else:
            found = sink.scanner.found if sink.scanner is not None else set()
            self.checker.add_blob(sha_to_hex(sha), size, found)
        content = Base(0, size, None, file.name) if file is not None else sink.chunks
        return (sha, offset, crc32), content

    # Reading the pack through the file

    def _header(self, offset: int) -> tuple[int, int, int, bytes]:
        """``(pack type, declared size, offset of the zlib stream, header bytes)``."""
        assert self._file is not None
        oid_length = len(self.hash_func().digest())
        return read_header(self._file.fileno(), offset, oid_length)[:4]

    def _inflate(self, data_at: int, size: int, header: bytes) -> tuple[bytes, int]:
        chunks: list[bytes] = []
        crc32 = self._inflate_to(data_at, size, header, chunks.append)
        return b"".join(chunks), crc32

    def _inflate_to(self, data_at: int, size: int, header: bytes, write) -> int:
        """Inflate the zlib stream at ``data_at`` into ``write``; return the record's CRC32.

        The copy before has already checked that it inflates to exactly ``size``.
        """
        assert self._file is not None
        steps = Inflating(self._file.fileno(), data_at, size, header)
        for chunk in steps:
            write(chunk)
        return steps.crc32
