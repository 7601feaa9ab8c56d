"""A client that stops sending its body does not hold a worker thread forever."""

from __future__ import annotations

import base64
import socket
from urllib.parse import urlsplit

import pytest

from _wire import FLUSH, PushTarget, post
from hfgit.accounts import Accounts
from hfgit.config import Settings
from hubtest import ENGINES, Git, Hub, start_server, stop_server


@pytest.fixture(scope="module")
def impatient_hub(request, tmp_path_factory):
    """One worker and a 2-second body read timeout, on each engine."""
    data_dir = tmp_path_factory.mktemp("slow") / "data"
    env = {"HFGIT_BODY_READ_TIMEOUT": "2"}
    accounts = Accounts.open(Settings.load(data_dir))
    engine = ["--engine", request.param]
    process, url = start_server(data_dir, workers=1, env=env, extra_args=engine)
    try:
        yield Hub(
            url=url,
            data_dir=data_dir,
            accounts=accounts,
            process=process,
            env=env,
            engine=request.param,
        )
    finally:
        stop_server(process)
        accounts.store.dispose()


def _stall(target, service: str) -> socket.socket:
    """Start a POST that promises 1 MB and sends 10 bytes."""
    parts = urlsplit(target.url)
    auth = base64.b64encode(f"u:{target.token}".encode()).decode()
    sock = socket.create_connection((parts.hostname, parts.port), timeout=60)
    sock.sendall(
        (
            f"POST {parts.path}/{service} HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: Basic {auth}\r\n"
            f"Content-Type: application/x-{service}-request\r\n"
            "Content-Length: 1000000\r\n\r\n"
        ).encode()
        + b"0000000000"
    )
    return sock


@pytest.mark.parametrize(
    ("impatient_hub", "service"),
    # receive-pack is hfgit's own on every engine: once is enough.
    [("git", "git-receive-pack"), *((engine, "git-upload-pack") for engine in ENGINES)],
    indirect=["impatient_hub"],
)
def test_stalled_body_is_dropped_and_the_server_keeps_serving(impatient_hub, tmp_path, service):
    target = PushTarget.create(impatient_hub, Git(tmp_path / "home"), tmp_path)
    stalled = [_stall(target, service) for _ in range(3)]
    try:
        for sock in stalled:
            # The server gives up on each (answer or close) instead of waiting forever.
            data = sock.recv(65536)
            assert data == b"" or data.startswith(b"HTTP/1.1 ")
        answer = post(target.url, "git-upload-pack", FLUSH, target.token)
        assert answer.status == 200
    finally:
        for sock in stalled:
            sock.close()
