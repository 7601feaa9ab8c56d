"""Raw ``dulwich.web`` as a gunicorn app: the benchmark's "no gate" reference.

``create_app()`` serves every bare repository under ``$BENCH_DULWICH_ROOT`` with no
authentication, through dulwich's own middleware chain (``make_wsgi_chain``). One
change is needed to run it under gunicorn at all: gunicorn has already decoded a
chunked body, but dulwich de-chunks again whenever ``Transfer-Encoding: chunked`` is
in the environ, so every push over 1 MiB would fail. The header is dropped when the
server says the input is terminated (``wsgi.input_terminated``).
"""

from __future__ import annotations

import os
from pathlib import Path

from dulwich.errors import NotGitRepository
from dulwich.repo import Repo
from dulwich.server import Backend
from dulwich.web import make_wsgi_chain


class RootBackend(Backend):
    """Opens ``<root>/<path>`` for each request, as the gate opens its repository."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def open_repository(self, path: str | bytes) -> Repo:
        if isinstance(path, bytes):  # dulwich's handlers pass the URL prefix as bytes
            path = path.decode("utf-8")
        target = (self.root / path.strip("/")).resolve()
        if not target.is_relative_to(self.root) or not (target / "HEAD").is_file():
            raise NotGitRepository(f"no repository at {path}")
        return Repo(str(target), bare=True)


class DechunkedInput:
    """Hide ``Transfer-Encoding`` from dulwich when the server already de-chunked."""

    def __init__(self, app) -> None:
        self.app = app

    def __call__(self, environ: dict, start_response):
        if environ.get("wsgi.input_terminated"):
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        return self.app(environ, start_response)


def create_app():
    return DechunkedInput(make_wsgi_chain(RootBackend(Path(os.environ["BENCH_DULWICH_ROOT"]))))
