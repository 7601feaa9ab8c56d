"""Around every request: its id, its timing and byte counts, its metrics.

The application leaves what it learns in the environ under the keys below (the route it
matched, the repository, the authenticated user, why authentication failed); gunicorn's
access log (:mod:`hfgit.logs`) and the metrics read them from there, so a request is
measured and logged in this one place whatever surface answered it.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator

from .. import metrics
from .routes import surface_of

ROUTE = "hfgit.route"  #: the endpoint matched, ``surface.handler``
REPO = "hfgit.repo"  #: the repository, as ``type ns/name``
USER = "hfgit.user"  #: the authenticated user's name
AUTH_FAILURE = "hfgit.auth_failure"  #: why credentials identified nobody (the gate's kind)
REQUEST_ID = "hfgit.request_id"

#: An incoming ``X-Request-Id`` is kept only if it is short and plain: no underscore, so
#: nothing token-shaped, and nothing that could break a log line.
_SAFE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9.:-]{0,63}")


def request_id(environ: dict) -> str:
    """The client's request id when it is a safe token, else a new one."""
    incoming = environ.get("HTTP_X_REQUEST_ID", "")
    if _SAFE_REQUEST_ID.fullmatch(incoming):
        return incoming
    return uuid.uuid4().hex


class _CountedInput:
    """``wsgi.input`` that counts the bytes the application reads."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self.count = 0

    def read(self, *args) -> bytes:
        data = self._stream.read(*args)
        self.count += len(data)
        return data

    def readline(self, *args) -> bytes:
        data = self._stream.readline(*args)
        self.count += len(data)
        return data

    def readlines(self, *args) -> list[bytes]:
        lines = self._stream.readlines(*args)
        self.count += sum(len(line) for line in lines)
        return lines

    def __iter__(self) -> Iterator[bytes]:
        for line in self._stream:
            self.count += len(line)
            yield line

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


class Observed:
    """The WSGI middleware: request id in and out, then one observation per request."""

    def __init__(self, app: Callable) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        started = time.perf_counter()
        environ[REQUEST_ID] = rid = request_id(environ)
        counted_in = _CountedInput(environ["wsgi.input"]) if "wsgi.input" in environ else None
        if counted_in is not None:
            environ["wsgi.input"] = counted_in
        state = {"status": 500, "sent": 0}

        def write_counted(write: Callable[[bytes], object]) -> Callable[[bytes], object]:
            def counted(data: bytes) -> object:
                state["sent"] += len(data)
                return write(data)

            return counted

        def start(status: str, headers: list, exc_info=None):
            state["status"] = int(status.split(None, 1)[0])
            state["length"] = next(
                (v for k, v in headers if k.lower() == "content-length" and v.isdigit()), "0"
            )
            headers = [(k, v) for k, v in headers if k.lower() != "x-request-id"]
            headers.append(("X-Request-Id", rid))
            return write_counted(start_response(status, headers, exc_info))

        def finish() -> None:
            received = counted_in.count if counted_in is not None else 0
            metrics.observe_request(
                environ.get(ROUTE),
                surface_of(environ.get("PATH_INFO") or "/"),
                state["status"],
                time.perf_counter() - started,
                sent=state["sent"],
                received=received,
                auth_failure=environ.get(AUTH_FAILURE),
            )

        try:
            answer = self.app(environ, start)
        except BaseException:
            finish()
            raise
        file_wrapper = environ.get("wsgi.file_wrapper")
        if isinstance(file_wrapper, type) and isinstance(answer, file_wrapper):
            # The server sends a file wrapper with sendfile: keep it, count its length.
            return _closing_file(answer, state, finish)
        return _Closing(answer, state, finish)


def _closing_file(answer, state: dict, finish: Callable[[], None]):
    close = getattr(answer, "close", None)

    def closed() -> None:
        try:
            if close is not None:
                close()
        finally:
            state["sent"] += int(state.get("length", "0"))
            finish()

    answer.close = closed
    return answer


class _Closing:
    """The response iterable, counted; observed once, when the server closes it."""

    def __init__(self, answer: Iterable[bytes], state: dict, finish: Callable[[], None]) -> None:
        self._answer = answer
        self._state = state
        self._finish = finish

    def __iter__(self) -> Iterator[bytes]:
        for chunk in self._answer:
            self._state["sent"] += len(chunk)
            yield chunk

    def close(self) -> None:
        try:
            close = getattr(self._answer, "close", None)
            if close is not None:
                close()
        finally:
            self._finish()
