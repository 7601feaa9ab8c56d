"""Request bodies: read exactly once, bounded after decompression.

dulwich de-chunks any body whose headers say ``chunked``, even when the WSGI server
already did (gunicorn does), and gunzips without a bound. Here the server's stream is
used as it is: every server we support (gunicorn, waitress, werkzeug) decodes chunked
bodies itself and says so with ``wsgi.input_terminated`` or a ``CONTENT_LENGTH``.
"""

from __future__ import annotations

import json
import re
import zlib
from typing import BinaryIO

from werkzeug.wsgi import get_input_stream

from ..config import MiB
from .refusal import Refusal

_CHUNK = 64 * 1024
#: A body refused by its declared length is still read (and dropped) up to this many
#: bytes, so a client that sends it whole before reading the answer sees the 4xx instead
#: of a reset connection; past it, the connection is closed unread.
DRAIN_BYTES = 64 * MiB
#: How deep JSON bodies may nest, and how many array elements and object members they
#: may hold in all, unless a caller says otherwise. No body the clients send comes close.
JSON_MAX_DEPTH = 32
JSON_MAX_ITEMS = 10_000


class BodyError(Refusal):
    """A request body that cannot be accepted; ``status`` is the HTTP answer."""


class BodyTooLarge(BodyError):
    def __init__(self, limit: int) -> None:
        super().__init__(
            413, f"Request body too large: the limit is {limit // MiB} MiB after decompression."
        )


class _Bounded:
    """Counts bytes handed out and refuses to go past ``limit``."""

    def __init__(self, read, limit: int) -> None:
        self._read = read
        self._limit = limit
        self._total = 0

    def read(self, size: int = -1) -> bytes:
        if size < 0:
            size = self._limit + 1 - self._total
        data = self._read(min(size, self._limit + 1 - self._total) or 1)
        self._total += len(data)
        if self._total > self._limit:
            raise BodyTooLarge(self._limit)
        return data


class _Gunzip:
    """Streaming gunzip whose memory use stays at one chunk, whatever the ratio."""

    def __init__(self, raw: BinaryIO) -> None:
        self._raw = raw
        self._inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self._buffer = bytearray()
        self._eof = False

    def _fill(self, wanted: int) -> None:
        while len(self._buffer) < wanted and not self._eof:
            data = self._inflate.unconsumed_tail
            if not data:
                if self._inflate.eof:
                    self._eof = True
                    break
                data = self._raw.read(_CHUNK)
                if not data:
                    raise BodyError(400, "Truncated gzip request body.")
            try:
                self._buffer += self._inflate.decompress(data, _CHUNK)
            except zlib.error:
                raise BodyError(400, "Malformed gzip request body.") from None

    def read(self, size: int = -1) -> bytes:
        self._fill(_CHUNK if size < 0 else size)
        count = len(self._buffer) if size < 0 else min(size, len(self._buffer))
        data = bytes(self._buffer[:count])
        del self._buffer[:count]
        return data


def drain(environ: dict, length: int) -> None:
    """Read and drop an unread body of ``length`` bytes, up to :data:`DRAIN_BYTES`.

    Closing a connection with unread data makes the kernel reset it, and a client still
    sending its body then never reads the answer already on its way (413, 401, …).
    """
    if length > DRAIN_BYTES:
        return
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        sock.settimeout(5)  # a stalled client is not worth waiting for; the worker resets it
    stream = get_input_stream(environ, safe_fallback=False)
    try:
        while length > 0:
            data = stream.read(min(length, _CHUNK))
            if not data:
                break
            length -= len(data)
    except OSError:
        pass


def check_transfer_coding(environ: dict) -> None:
    """Refuse a request body sent with any transfer coding but plain ``chunked``.

    gunicorn removes the chunking of ``Transfer-Encoding: gzip, chunked`` and hands on the
    rest as it is, so the application would read gzip bytes as if they were the body; a
    proxy in front may frame the same bytes differently again (request smuggling).
    """
    coding = environ.get("HTTP_TRANSFER_ENCODING")
    if coding is not None and coding.strip().lower() != "chunked":
        raise BodyError(501, f"Transfer-Encoding {coding[:40]!r} is not supported: use chunked.")


def _no_body(size: int = -1) -> bytes:
    return b""


def open_body(environ: dict, limit: int):
    """Return a ``read(n)`` callable for the request body, bounded at ``limit`` bytes.

    Raises :class:`BodyError` for a body that is too large by its declared length,
    that no server decoded, or that uses an encoding we do not accept.
    """
    length = environ.get("CONTENT_LENGTH") or ""
    chunked = "chunked" in environ.get("HTTP_TRANSFER_ENCODING", "").lower()
    if chunked and length:
        raise BodyError(400, "Conflicting Content-Length and Transfer-Encoding headers.")
    if length:
        if not length.isdigit():
            raise BodyError(400, "Invalid Content-Length header.")
        if int(length) > limit:
            drain(environ, int(length))
            raise BodyTooLarge(limit)
    elif not environ.get("wsgi.input_terminated"):
        if chunked:
            raise BodyError(411, "This server cannot read chunked request bodies here.")
        return _no_body
    stream = get_input_stream(environ, safe_fallback=False)
    raw = _Bounded(stream.read, limit)
    encoding = environ.get("HTTP_CONTENT_ENCODING", "").strip().lower()
    if encoding in ("", "identity"):
        return raw.read
    if encoding in ("gzip", "x-gzip"):
        return _Bounded(_Gunzip(raw).read, limit).read
    raise BodyError(415, f"Unsupported Content-Encoding {encoding!r}: use gzip or none.")


def read_all(read) -> bytes:
    """Everything a ``read(n)`` from :func:`open_body` gives, for bodies small enough to hold."""
    chunks = []
    while chunk := read(_CHUNK):
        chunks.append(chunk)
    return b"".join(chunks)


_JSON_NEXT = re.compile(rb'["\[\]{},]')
#: The rest of a JSON string after its opening quote; unrolled, so it runs in linear time.
_JSON_STRING_END = re.compile(rb'[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)


def check_json_shape(raw: bytes, *, max_depth: int, max_items: int) -> None:
    """Refuse JSON nested deeper than ``max_depth`` or with more than ``max_items`` elements.

    Runs before the parser, which recurses once per level (10,000 levels are a
    ``RecursionError``) and builds every element before anyone can count them. One
    linear scan: strings are skipped whole, brackets and commas are counted.
    """
    depth = items = 0
    position = 0
    search, string_end = _JSON_NEXT.search, _JSON_STRING_END.match
    while (found := search(raw, position)) is not None:
        char = raw[found.start()]
        position = found.end()
        if char == 0x22:  # '"'
            end = string_end(raw, position)
            if end is None:
                return  # an unterminated string: the parser says it is not JSON
            position = end.end()
        elif char in b"[{":
            depth += 1
            if depth > max_depth:
                raise BodyError(400, f"JSON body nested too deep: the limit is {max_depth} levels.")
        elif char in b"]}":
            depth -= 1
        else:
            items += 1
            if items >= max_items:
                raise BodyError(
                    413, f"JSON body too large: the limit is {max_items} elements in all."
                )


class BoundedJson:
    """The ``json`` module werkzeug's ``Request.get_json`` uses, bounded before parsing.

    Set as a request class's ``json_module``, every ``get_json`` of that surface refuses
    a body nested or repeated past the caps with a 4xx instead of a ``RecursionError``.
    """

    @staticmethod
    def loads(raw: str | bytes, **kwargs: object) -> object:
        data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
        check_json_shape(data, max_depth=JSON_MAX_DEPTH, max_items=JSON_MAX_ITEMS)
        return json.loads(raw, **kwargs)

    dumps = staticmethod(json.dumps)


def parse_json(
    raw: bytes, *, max_depth: int = JSON_MAX_DEPTH, max_items: int = JSON_MAX_ITEMS
) -> object:
    """Parse a request body as JSON within bounds; :class:`BodyError` (4xx) if it is not."""
    check_json_shape(raw, max_depth=max_depth, max_items=max_items)
    try:
        return json.loads(raw)
    except ValueError:  # UnicodeDecodeError too
        raise BodyError(400, "The request body is not valid JSON.") from None
