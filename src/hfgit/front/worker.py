"""hfgit's gunicorn worker: an event loop reads every request whole, threads serve them.

gunicorn's ``gthread`` worker gives a connection a thread as soon as its first bytes
arrive, and the thread then waits on the socket for the rest of the headers and the
body: 300 clients that stop halfway hold every thread. Here the worker's event loop
(gthread's own selector loop, reused) reads headers and bodies of all connections
without blocking (``reader.py`` spools them), enforces the read timeouts and the
per-client caps, and hands a request to the thread pool only once it is complete. The
thread parses the spooled bytes with gunicorn's parser and writes the answer to the
socket itself, streaming, as gthread does. A kept-alive connection goes back to the loop.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import ssl
import time
from functools import partial
from http import HTTPStatus
from pathlib import Path

from gunicorn import http, util
from gunicorn.workers.gthread import STOP_KEEPALIVE_LINGER, TConn, ThreadWorker

from .clients import ClientCaps, forwarded_client
from .reader import Rejected, RequestReader

_RECV = 256 * 1024
#: How long a closed connection keeps reading (and dropping) what the client still
#: sends, so the kernel does not reset it before the client has read our answer.
_LINGER = 2.0
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"


class FrontConn(TConn):
    """A client connection and the request being read on it."""

    def __init__(self, cfg, sock, client, server, peer: str, counted: bool) -> None:
        super().__init__(cfg, sock, client, server)
        self.peer = peer
        self.counted = counted
        self.reader: RequestReader | None = None
        self.requester: str | None = None
        self.idle_since = self.started_at = self.last_read = time.monotonic()
        self.continued = False
        self.linger_until: float | None = None


class FrontWorker(ThreadWorker):
    """``gthread`` with requests read whole by the event loop before a thread serves them."""

    def init_process(self) -> None:
        settings = self.app.settings
        self.trust_proxy = settings.trust_proxy
        self.read_timeout = settings.body_read_timeout
        self.header_timeout = settings.header_timeout
        self.request_timeout = settings.request_timeout
        self.max_body = max(
            settings.max_push_bytes, settings.max_fetch_request_bytes, settings.lfs_max_object_bytes
        )
        self.caps = ClientCaps(
            settings.max_connections_per_client, settings.max_requests_per_client
        )
        self.spool_dir = Path(settings.data_dir) / "spool"
        self.spool_dir.mkdir(mode=0o700, exist_ok=True)
        self.reading: set[FrontConn] = set()
        self.lingering: set[FrontConn] = set()
        self._stop_linger_until: float | None = None
        super().init_process()

    # The event loop's side: accept, read, time out, dispatch.

    def accept(self, listener) -> None:
        try:
            sock, addr = listener.accept()
        except OSError as error:
            if error.errno in (errno.EAGAIN, errno.ECONNABORTED, errno.EWOULDBLOCK):
                return
            raise
        peer = addr[0] if isinstance(addr, tuple) else str(addr)
        # Behind a trusted proxy every connection comes from the proxy: the connection
        # cap would cap the proxy, so only requests are capped there (by X-Forwarded-For).
        counted = not self.trust_proxy
        if counted and not self.caps.open_connection(peer):
            self.log.info("%s: past HFGIT_MAX_CONNECTIONS_PER_CLIENT; connection closed", peer)
            util.close(sock)
            return
        self.nr_conns += 1
        conn = FrontConn(self.cfg, sock, addr, listener.getsockname(), peer, counted)
        self._await_request(conn)

    def _await_request(self, conn: FrontConn, leftover: bytes = b"") -> None:
        now = time.monotonic()
        conn.idle_since = conn.started_at = conn.last_read = now
        conn.continued = False
        conn.requester = None
        try:
            conn.reader = RequestReader(self.max_body, self.spool_dir, leftover)
        except Rejected as rejected:
            self._reject(conn, rejected.status, rejected.message)
            return
        if conn.reader.complete:
            self._dispatch(conn)
            return
        self.reading.add(conn)
        self.poller.register(conn.sock, selectors.EVENT_READ, partial(self._on_readable, conn))

    def _on_readable(self, conn: FrontConn, _sock) -> None:
        try:
            data = conn.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            self._stop_reading(conn)
            self._close(conn)
            return
        reader = conn.reader
        if not data:
            self._stop_reading(conn)
            if reader.started:
                # The client stopped sending within a request; one that only half-closed
                # may still read, so it is told why (answering a gone client costs nothing).
                self._log(conn, "abandoned by the client before its end")
                self._reject(conn, 400, "The request ended before its end (its length or chunks).")
                return
            self._close(conn)  # quietly, between requests
            return
        now = time.monotonic()
        if not reader.started:
            conn.started_at = now
        conn.last_read = now
        try:
            whole = reader.feed(data)
        except Rejected as rejected:
            self._stop_reading(conn)
            self._reject(conn, rejected.status, rejected.message)
            return
        if whole:
            self._stop_reading(conn)
            self._dispatch(conn)
        elif reader.wants_continue and not conn.continued:
            conn.continued = True
            self._send_small(conn, _CONTINUE)

    def _stop_reading(self, conn: FrontConn) -> None:
        self.reading.discard(conn)
        self._unregister(conn)

    def _dispatch(self, conn: FrontConn) -> None:
        reader = conn.reader
        requester = conn.peer
        if self.trust_proxy:
            requester = forwarded_client(reader.header(b"x-forwarded-for"), conn.peer)
        if not self.caps.start_request(requester):
            conn.requester = requester
            self._reject(conn, 429, "Too many requests at once from this client: retry later.")
            return
        conn.requester = requester
        self.enqueue_req(conn)

    def murder_pending(self) -> None:
        """Called by gthread's loop about once a second: time out requests being read,
        close idle connections (within 2 s when stopping), finish lingering closes."""
        now = time.monotonic()
        if not self.alive and self._stop_linger_until is None:
            self._stop_linger_until = now + STOP_KEEPALIVE_LINGER
        for conn in list(self.reading):
            reader = conn.reader
            if not reader.started:
                # A stopping worker keeps idle connections briefly, as gthread does, for
                # a request a client may be sending already (answered "Connection: close").
                stopped = self._stop_linger_until is not None and now > self._stop_linger_until
                if stopped or now - conn.idle_since > self.cfg.keepalive:
                    self._stop_reading(conn)
                    self._close(conn)
                continue
            if now - conn.last_read > self.read_timeout:
                message = f"The client sent nothing for {self.read_timeout} s."
            elif reader.headers is None and now - conn.started_at > self.header_timeout:
                message = f"The request headers took longer than {self.header_timeout} s."
            elif now - conn.started_at > self.request_timeout:
                message = f"The request took longer than {self.request_timeout} s to arrive."
            else:
                continue
            self._stop_reading(conn)
            self._reject(conn, 408, message)
        for conn in list(self.lingering):
            if now > conn.linger_until:
                self._stop_lingering(conn)

    def murder_keepalived(self, force: bool = False) -> None:
        """Kept-alive connections wait in :attr:`reading`; on the way out, close them all."""
        if force:
            for conn in list(self.reading):
                self._stop_reading(conn)
                self._close(conn)
            for conn in list(self.lingering):
                self._stop_lingering(conn)

    def _log(self, conn: FrontConn, outcome: str) -> None:
        """A line for a request that never reaches the access log (no thread served it)."""
        line = conn.reader.request_line if conn.reader is not None else ""
        self.log.info('%s "%s" %s', conn.requester or conn.peer, line or "-", outcome)

    def _reject(self, conn: FrontConn, status: int, message: str) -> None:
        """Answer a request the threads never see, then close the connection."""
        self._log(conn, f"{status} {message}")
        if conn.reader is not None:
            conn.reader.close()
        body = (message + "\n").encode()
        head = (
            f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
            "Content-Type: text/plain; charset=utf-8\r\n"
            f"Content-Length: {len(body)}\r\n"
            + ("Retry-After: 1\r\n" if status == 429 else "")
            + "Connection: close\r\n\r\n"
        )
        self._send_small(conn, head.encode() + body)
        self._linger(conn)

    def _send_small(self, conn: FrontConn, data: bytes) -> None:
        """Send a few bytes without blocking; what does not fit is dropped with the
        connection (a client that does not read them is not waited for)."""
        with contextlib.suppress(OSError):
            conn.sock.send(data)

    def _linger(self, conn: FrontConn) -> None:
        try:
            conn.sock.shutdown(socket.SHUT_WR)
        except OSError:
            self._close(conn)
            return
        conn.linger_until = time.monotonic() + _LINGER
        self.lingering.add(conn)
        self.poller.register(
            conn.sock, selectors.EVENT_READ, partial(self._on_lingering_readable, conn)
        )

    def _on_lingering_readable(self, conn: FrontConn, _sock) -> None:
        try:
            data = conn.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self._stop_lingering(conn)

    def _stop_lingering(self, conn: FrontConn) -> None:
        self.lingering.discard(conn)
        self._unregister(conn)
        self._close(conn)

    def _unregister(self, conn: FrontConn) -> None:
        with contextlib.suppress(KeyError, ValueError, OSError):
            self.poller.unregister(conn.sock)

    def _close(self, conn: FrontConn) -> None:
        if conn.reader is not None:
            conn.reader.close()
        if conn.counted:
            self.caps.close_connection(conn.peer)
            conn.counted = False
        self.nr_conns -= 1
        util.close(conn.sock)

    def finish_request(self, conn: FrontConn, fs) -> None:
        """Back on the event loop once a thread has answered."""
        self.caps.end_request(conn.requester)
        conn.reader.close()
        try:
            keepalive = bool(fs.result()) if not fs.cancelled() else False
        except Exception:
            keepalive = False
        if keepalive and self.alive:
            conn.sock.setblocking(False)
            self._await_request(conn, conn.reader.leftover)
        else:
            conn.sock.setblocking(False)
            self._linger(conn)

    # The thread's side: parse the spooled request with gunicorn and answer it.

    def handle(self, conn: FrontConn) -> bool:
        req = None
        try:
            conn.sock.setblocking(True)
            # A client that stops reading the answer frees the thread after this long.
            conn.sock.settimeout(self.read_timeout)
            conn.parser = http.get_parser(self.cfg, conn.reader.chunks(), conn.client)
            req = next(conn.parser)
            # The event loop has answered "Expect: 100-continue" already, and the body is
            # here: gunicorn must not send a second 100 Continue.
            req._expected_100_continue = False
            return self.handle_request(req, conn)
        except http.errors.NoMoreData:
            self.log.debug("Request ended early: gunicorn and h11 framed it differently.")
        except StopIteration:
            pass
        except TimeoutError:
            self.log.debug("The client stopped reading the answer; connection closed.")
        except ssl.SSLError:
            self.log.debug("TLS is not served by this worker.")
        except OSError as error:
            if error.errno not in (errno.EPIPE, errno.ECONNRESET, errno.ENOTCONN):
                self.log.exception("Socket error processing request.")
        except Exception as error:
            self.handle_error(req, conn.sock, conn.client, error)
        return False
