"""One request read whole, without a thread: framing by h11, bytes spooled as they come.

The event loop feeds whatever the socket has; h11 says where the request ends (headers,
``Content-Length`` or ``chunked`` framing). The raw bytes go to a spool that stays in
memory up to :data:`MEMORY_BYTES` and continues on disk past that, so a 2 GiB push costs
disk, not memory. gunicorn parses the spooled bytes again in the thread that serves them:
the application sees exactly what it saw before, and a request h11 and gunicorn would
frame differently is never followed by another on the same connection.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path

import h11

#: A spool past this many bytes moves to a file.
MEMORY_BYTES = 256 * 1024
#: Largest request line plus headers.
MAX_HEAD_BYTES = 64 * 1024
_CHUNK = 1024 * 1024


class Rejected(Exception):
    """A request that cannot be read: answer ``status`` with ``message``, then close."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class RequestReader:
    """Accumulates one request; :meth:`feed` says when it is whole.

    ``max_body`` bounds the body as framed (after de-chunking, before any gunzip, which
    the application bounds again per route).
    """

    def __init__(self, max_body: int, spool_dir: Path, leftover: bytes = b"") -> None:
        self._h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD_BYTES)
        self._max_body = max_body
        # Lives as long as the request, across many feeds: closed by chunks() or close().
        self._spool = tempfile.SpooledTemporaryFile(MEMORY_BYTES, dir=spool_dir)  # noqa: SIM115
        self._body_bytes = 0
        self.headers: list[tuple[bytes, bytes]] | None = None
        #: ``METHOD /path`` (no query: LFS transfer URLs carry signatures), for the log.
        self.request_line = ""
        self.wants_continue = False
        self.complete = False
        #: Bytes the client sent after this request (a pipelined next one).
        self.leftover = b""
        self.started = bool(leftover)
        if leftover:
            self.feed(leftover)

    def feed(self, data: bytes) -> bool:
        """Take bytes read from the socket (``b""``: the client closed); True once whole.

        Raises :class:`Rejected` for a request that is malformed or over a limit.
        """
        self.started = True
        self._spool.write(data)
        try:
            self._h11.receive_data(data)
            self._advance()
        except h11.RemoteProtocolError as error:
            raise Rejected(error.error_status_hint, _wording(str(error))) from None
        return self.complete

    def _advance(self) -> None:
        while not self.complete:
            event = self._h11.next_event()
            if event is h11.NEED_DATA:
                return
            if isinstance(event, h11.Request):
                self._check_head(event)
            elif isinstance(event, h11.Data):
                self._body_bytes += len(event.data)
                if self._body_bytes > self._max_body:
                    raise Rejected(413, "Request body too large.")
            elif isinstance(event, h11.EndOfMessage):
                self.leftover = self._h11.trailing_data[0]
                size = self._spool.tell() - len(self.leftover)
                self._spool.truncate(size)
                self.complete = True
            elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
                raise Rejected(400, "The client closed the connection before the request ended.")

    def _check_head(self, request: h11.Request) -> None:
        self.headers = list(request.headers)
        path = request.target.split(b"?", 1)[0].decode("latin-1")
        self.request_line = f"{request.method.decode('latin-1')} {path}"
        for name, value in self.headers:
            if name == b"content-length" and int(value) > self._max_body:
                raise Rejected(413, "Request body too large.")
        self.wants_continue = self._h11.they_are_waiting_for_100_continue

    def header(self, name: bytes) -> str | None:
        """The comma-joined values of one header (lowercase ``name``), as WSGI sees it."""
        values = [v.decode("latin-1") for n, v in self.headers or () if n == name]
        return ",".join(values) if values else None

    def chunks(self) -> Iterator[bytes]:
        """The request's bytes, for gunicorn's parser; the spool is closed at the end."""
        self._spool.seek(0)
        try:
            while data := self._spool.read(_CHUNK):
                yield data
        finally:
            self.close()

    def close(self) -> None:
        self._spool.close()


def _wording(error: str) -> str:
    if "Transfer-Encoding" in error:
        return "This Transfer-Encoding is not supported: use chunked."
    return f"Malformed request: {error}."
