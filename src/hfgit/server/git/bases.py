"""Delta bases in bounded memory: held, read piecewise, applied as a stream, and read
from the repository's own packs.

A thin pack's deltas have their bases in the repository. dulwich's ``get_raw`` inflates
such a base whole, through an ``mmap`` of the repository's pack, and a base that is
itself a delta there costs its whole chain in memory. :class:`RepositoryObjects` instead
inflates a base stored whole in a pack from the pack file at its offset, in steps of
:data:`STEP`; a base stored as a delta is resolved link by link, each link written to a
file of the quarantine (or held, when it is no bigger than a step) and the next delta
applied as a stream against it (as the indexer does with bases of the pushed pack).
Only the instructions of one delta and two links of at most a step are held at a time.
"""

from __future__ import annotations

import binascii
import os
import tempfile
import zlib
from collections.abc import Iterator

from dulwich.errors import ApplyDeltaError
from dulwich.objects import sha_to_hex
from dulwich.pack import OFS_DELTA, REF_DELTA

from ...config import MiB

#: Most bytes one step of inflating or copying produces.
STEP = 1 * MiB
_READ = 64 * 1024
#: git's ``pack.depth`` is 50 by default; a chain far longer means a broken pack.
_MAX_CHAIN = 10_000
_TYPE_NAMES = {b"commit": 1, b"tree": 2, b"blob": 3, b"tag": 4}


class Base:
    """An object some deltas still wait for: in memory, or in a file of the quarantine."""

    def __init__(self, users: int, size: int, data: bytes | None, path: str | None) -> None:
        self.users = users
        self.size = size
        self.data = data
        self.path = path
        self._fd = os.open(path, os.O_RDONLY) if path else None

    def read(self, offset: int, length: int) -> bytes:
        if self.data is not None:
            return self.data[offset : offset + length]
        assert self._fd is not None
        return os.pread(self._fd, length, offset)

    def chunks(self) -> Iterator[bytes]:
        """The whole content, in steps of :data:`STEP`."""
        for offset in range(0, self.size, STEP):
            yield self.read(offset, STEP)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.path is not None:
            os.unlink(self.path)
            self.path = None


def spill_file(directory: str):
    """A file in ``directory`` (the quarantine) that outlives its ``with`` block."""
    return tempfile.NamedTemporaryFile(dir=directory, prefix="tmp_base_", delete=False)


def read_header(fd: int, offset: int, oid_length: int):
    """The pack record at ``offset``: ``(type, declared size, offset of its zlib stream,
    header bytes, delta base)``; the base is an absolute offset (``OFS_DELTA``), an
    object id (``REF_DELTA``) or ``None``."""
    head = os.pread(fd, 64, offset)
    position = 0
    byte = head[0]
    pack_type = (byte >> 4) & 0x07
    size = byte & 0x0F
    shift = 4
    while byte & 0x80:
        position += 1
        byte = head[position]
        size |= (byte & 0x7F) << shift
        shift += 7
    position += 1
    delta_base: int | bytes | None = None
    if pack_type == OFS_DELTA:
        byte = head[position]
        distance = byte & 0x7F
        while byte & 0x80:
            position += 1
            byte = head[position]
            distance = ((distance + 1) << 7) | (byte & 0x7F)
        position += 1
        delta_base = offset - distance
    elif pack_type == REF_DELTA:
        delta_base = head[position : position + oid_length]
        position += oid_length
    return pack_type, size, offset + position, head[:position], delta_base


class Inflating:
    """The zlib stream at ``position`` of ``fd``, as chunks of at most :data:`STEP` bytes.

    After the last chunk, :attr:`crc32` is the CRC32 of ``header`` and the compressed
    stream (the record's, for the index). ``size`` (``None``: unknown) is checked.
    """

    def __init__(self, fd: int, position: int, size: int | None, header: bytes = b"") -> None:
        self.fd = fd
        self.position = position
        self.size = size
        self.crc32 = binascii.crc32(header)

    def __iter__(self) -> Iterator[bytes]:
        inflater = zlib.decompressobj()
        total = 0
        position = self.position
        while not inflater.eof:
            raw = os.pread(self.fd, _READ, position)
            if not raw:
                raise zlib.error("EOF before end of zlib stream")
            pending = raw
            while pending and not inflater.eof:
                out = inflater.decompress(pending, STEP)
                pending = inflater.unconsumed_tail
                total += len(out)
                if self.size is not None and total > self.size:
                    raise zlib.error(f"object inflates to more than {self.size} bytes")
                yield out
            used = len(raw) - len(inflater.unused_data) if inflater.eof else len(raw)
            self.crc32 = binascii.crc32(raw[:used], self.crc32)
            position += used
        if self.size is not None and total != self.size:
            raise zlib.error(f"object inflates to {total} bytes, not {self.size}")


def delta_sizes(delta: bytes) -> tuple[int, int, int]:
    """A delta's base size and target size, and where its instructions start.

    Raises :class:`~dulwich.errors.ApplyDeltaError` when ``delta`` ends inside them.
    """
    position = 0
    sizes = []
    for _ in range(2):
        value = shift = 0
        while True:
            if position >= len(delta):
                raise ApplyDeltaError("delta ends inside its header")
            byte = delta[position]
            position += 1
            value |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        sizes.append(value)
    return sizes[0], sizes[1], position


def apply_delta_streaming(base: Base, delta: bytes, position: int, target_size: int, sink) -> None:
    """git's delta format, applied piece by piece: copies read from ``base`` in steps."""
    end = len(delta)
    while position < end:
        op = delta[position]
        position += 1
        if op & 0x80:
            copy_offset = copy_size = 0
            for bit in range(4):
                if op & (1 << bit):
                    copy_offset |= delta[position] << (bit * 8)
                    position += 1
            for bit in range(3):
                if op & (1 << (4 + bit)):
                    copy_size |= delta[position] << (bit * 8)
                    position += 1
            copy_size = copy_size or 0x10000
            if copy_offset + copy_size > base.size:
                raise ApplyDeltaError("delta copies from past the end of its base")
            while copy_size:
                step = min(copy_size, STEP)
                sink.write(base.read(copy_offset, step))
                copy_offset += step
                copy_size -= step
        elif op:
            if position + op > end:
                raise ApplyDeltaError("delta ends inside an insert")
            sink.write(delta[position : position + op])
            position += op
        else:
            raise ApplyDeltaError("invalid delta opcode 0")
        if sink.length > target_size:
            raise ApplyDeltaError("delta makes more than its declared target size")
    if sink.length != target_size:
        raise ApplyDeltaError(f"delta made {sink.length} bytes, not its declared {target_size}")


class _FileSink:
    def __init__(self, file) -> None:
        self.file = file
        self.length = 0

    def write(self, data: bytes) -> None:
        self.file.write(data)
        self.length += len(data)


class _BytesSink:
    def __init__(self) -> None:
        self.data = bytearray()

    @property
    def length(self) -> int:
        return len(self.data)

    def write(self, data: bytes) -> None:
        self.data += data


class RepositoryObjects:
    """Objects of the repository as ``(type, size, chunks)``, inflated in bounded steps.

    Objects stored whole in a pack or loose are inflated as they are read; an object
    stored as a delta has its base resolved first: into memory when it is at most
    :data:`STEP` bytes (most are: a temporary file for each would cost a push of 50
    small commits more than its indexing), else into a file of ``spill_dir``. Objects
    found nowhere else (alternates) fall back to dulwich's ``get_raw``.
    """

    def __init__(self, store, spill_dir: str) -> None:
        self.store = store
        self.spill_dir = spill_dir
        self.oid_length = store.object_format.oid_length

    def stream(self, sha: bytes) -> tuple[int, int, Iterator[bytes]]:
        """``(type, size, chunks)`` of the object ``sha`` (binary); KeyError if absent."""
        found = self._locate(sha)
        if found is not None:
            return self._stream_record(*found, 0)
        loose = self.store._get_shafile_path(sha_to_hex(sha))
        if os.path.exists(loose):
            return _stream_loose(loose)
        type_num, data = self.store.get_raw(sha)
        return type_num, len(data), iter([data])

    def _locate(self, sha: bytes) -> tuple[int, str, int] | None:
        """``(fd, pack name, offset)`` of ``sha`` in a pack, the fd a copy of the pack's
        own open file: a concurrent repack that deletes the pack cannot take it away.
        dulwich's lookup evicts a pack that disappeared and rescans, as git does."""

        def lookup(pack) -> tuple[int, str, int]:
            offset = pack.index.object_offset(sha)
            return os.dup(pack.data._file.fileno()), pack._basename, offset

        try:
            return self.store._lookup_in_packs(lookup)
        except KeyError:
            return None

    def _stream_record(self, fd: int, name: str, offset: int, depth: int):
        """The record at ``offset`` of the pack open as ``fd`` (closed when done); a
        delta's base is resolved first (into a file), then its instructions applied."""
        try:
            if depth > _MAX_CHAIN:
                raise ApplyDeltaError(f"delta chain in {name} longer than {_MAX_CHAIN}")
            pack_type, size, data_at, _, delta_base = read_header(fd, offset, self.oid_length)
        except BaseException:
            os.close(fd)
            raise
        if delta_base is None:
            return pack_type, size, _closing(fd, Inflating(fd, data_at, size))
        base = None
        try:
            if isinstance(delta_base, int):
                where = (os.dup(fd), name, delta_base)
            else:
                where = self._locate(delta_base)
                if where is None:
                    raise KeyError(sha_to_hex(delta_base))
            type_num, base = self._spill(*self._stream_record(*where, depth + 1))
            delta = b"".join(Inflating(fd, data_at, size))
            base_size, target_size, position = delta_sizes(delta)
            if base_size != base.size:
                raise ApplyDeltaError(f"delta in {name} expects a base of {base_size} bytes")
            if target_size <= STEP:
                sink = _BytesSink()
                apply_delta_streaming(base, delta, position, target_size, sink)
                result = Base(0, target_size, bytes(sink.data), None)
            else:
                with spill_file(self.spill_dir) as file:
                    apply_delta_streaming(base, delta, position, target_size, _FileSink(file))
                result = Base(0, target_size, None, file.name)
        finally:
            os.close(fd)
            if base is not None:
                base.close()
        return type_num, target_size, _draining(result)

    def _spill(self, type_num: int, size: int, chunks: Iterator[bytes]) -> tuple[int, Base]:
        if size <= STEP:
            return type_num, Base(0, size, b"".join(chunks), None)
        with spill_file(self.spill_dir) as file:
            for chunk in chunks:
                file.write(chunk)
        return type_num, Base(0, size, None, file.name)


def _closing(fd: int, chunks) -> Iterator[bytes]:
    """``chunks``, then ``fd`` closed (also when the consumer stops early)."""
    try:
        yield from chunks
    finally:
        os.close(fd)


def _draining(base: Base) -> Iterator[bytes]:
    """The content of ``base``, whose file is deleted after the last chunk."""
    try:
        yield from base.chunks()
    finally:
        base.close()


def _stream_loose(path: str) -> tuple[int, int, Iterator[bytes]]:
    """A loose object: its ``type size\\0`` header read first, the rest as a stream."""
    fd = os.open(path, os.O_RDONLY)
    try:
        steps = iter(Inflating(fd, 0, None))
        head = b""
        while b"\x00" not in head:
            head += next(steps)
        header, rest = head.split(b"\x00", 1)
        kind, length = header.split(b" ", 1)
        type_num, size = _TYPE_NAMES[kind], int(length)
    except BaseException:
        os.close(fd)
        raise
    return type_num, size, _closing(fd, _prefixed(rest, steps))


def _prefixed(first: bytes, rest: Iterator[bytes]) -> Iterator[bytes]:
    if first:
        yield first
    yield from rest
