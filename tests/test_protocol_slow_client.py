"""A client that stops sending its body does not hold a worker thread forever."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest

from _wire import FLUSH, PushTarget, post, request_head
from hubtest import ENGINES, Git, Hub, running_hub


@pytest.fixture(scope="module")
def impatient_hub(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Hub]:
    """One worker and a 2-second body read timeout, on each engine."""
    data_dir = tmp_path_factory.mktemp("slow") / "data"
    env = {"HFGIT_BODY_READ_TIMEOUT": "2"}
    engine = ["--engine", request.param]
    with running_hub(data_dir, workers=1, env=env, extra_args=engine) as hub:
        hub.engine = request.param
        yield hub


def _stall(target, service: str) -> socket.socket:
    """Start a POST that promises 1 MB and sends 10 bytes."""
    parts = urlsplit(target.url)
    sock = socket.create_connection((parts.hostname, parts.port), timeout=60)
    head = request_head(
        "POST",
        target.url,
        f"/{service}",
        target.token,
        {"Content-Type": f"application/x-{service}-request", "Content-Length": "1000000"},
    )
    sock.sendall(head + b"0000000000")
    return sock


@pytest.mark.parametrize(
    ("impatient_hub", "service"),
    # receive-pack is hfgit's own on every engine: once is enough.
    [("git", "git-receive-pack"), *((engine, "git-upload-pack") for engine in ENGINES)],
    indirect=["impatient_hub"],
)
def test_stalled_body_is_dropped_and_the_server_keeps_serving(
    impatient_hub: Hub, git: Git, tmp_path, service
):
    target = PushTarget.create(impatient_hub, git, tmp_path)
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
