"""Stalled and idle connections hold no thread: git keeps working beside them.

``hfgit serve`` with its defaults; the connections come from 50 loopback addresses
(127.0.0.2 … 127.0.0.51), so the per-client caps are not what saves the server. The
git commands carry a generous timeout as a hang guard, nothing more.
"""

from __future__ import annotations

import os
import resource
import socket
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from _wire import FLUSH, UPLOAD_CAPS, PushTarget, pkt, request_head
from hubtest import Git, Hub, MakeHub, running_hub, unique

ADDRESSES = [f"127.0.0.{n}" for n in range(2, 52)]
HANG_GUARD = 240


@pytest.fixture(scope="module")
def default_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    with running_hub(tmp_path_factory.mktemp("load") / "data") as hub:
        yield hub


@pytest.fixture(scope="module", autouse=True)
def _enough_file_descriptors() -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4096:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8192), hard))


def connect(url: str, source: str) -> socket.socket:
    parts = urlsplit(url)
    return socket.create_connection(
        (parts.hostname, parts.port), timeout=HANG_GUARD, source_address=(source, 0)
    )


@contextmanager
def stalled_bodies(target: PushTarget, count: int) -> Iterator[list[socket.socket]]:
    """``count`` POSTs that promise 1 MB and send 10 bytes, spread over the addresses."""
    head = request_head(
        "POST",
        target.url,
        "/git-upload-pack",
        target.token,
        {"Content-Type": "application/x-git-upload-pack-request", "Content-Length": "1000000"},
    )
    with ExitStack() as stack:
        sockets = []
        for n in range(count):
            sock = stack.enter_context(connect(target.url, ADDRESSES[n % len(ADDRESSES)]))
            sock.sendall(head + b"0000000000")
            sockets.append(sock)
        yield sockets


@contextmanager
def idle_keepalive(hub: Hub, count: int) -> Iterator[list[socket.socket]]:
    """``count`` connections that made one request each and keep the connection open."""
    host = urlsplit(hub.url).netloc
    request = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    with ExitStack() as stack:
        sockets = []
        for n in range(count):
            sock = stack.enter_context(connect(hub.url, ADDRESSES[n % len(ADDRESSES)]))
            sock.sendall(request)
            sockets.append(sock)
        for sock in sockets:
            answer = sock.recv(65536)
            assert answer.startswith(b"HTTP/1.1 200"), answer[:200]
            assert b"connection: close" not in answer.lower()
        yield sockets


def git_works(hub: Hub, git: Git, target: PushTarget, tmp_path: Path) -> None:
    """ls-remote, a clone and a push all complete."""
    refs = git.run("ls-remote", target.url, token=target.token, timeout=HANG_GUARD).stdout
    assert target.main in refs
    clone = tmp_path / unique("clone")
    git.run("clone", "-q", target.url, str(clone), token=target.token, timeout=HANG_GUARD)
    new = git.commit(clone, {"more.txt": unique("content")})
    git.run("push", "-q", "origin", "main", cwd=clone, token=target.token, timeout=HANG_GUARD)
    refs = git.run("ls-remote", target.url, token=target.token, timeout=HANG_GUARD).stdout
    assert f"{new}\trefs/heads/main" in refs


def test_git_works_while_300_connections_stall_mid_body(default_hub: Hub, git: Git, tmp_path: Path):
    target = PushTarget.create(default_hub, git, tmp_path)
    with stalled_bodies(target, 300):
        git_works(default_hub, git, target, tmp_path)


def test_git_works_while_1000_keepalive_connections_idle(
    default_hub: Hub, git: Git, tmp_path: Path
):
    target = PushTarget.create(default_hub, git, tmp_path)
    with idle_keepalive(default_hub, 1000):
        git_works(default_hub, git, target, tmp_path)


def _status(sock: socket.socket) -> bytes:
    """The status line of the answer on ``sock``, or b"" if the server closed it."""
    try:
        return sock.recv(65536).split(b"\r\n", 1)[0]
    except ConnectionResetError:
        return b""


def _healthz(hub: Hub, source: str, headers: str = "") -> bytes:
    host = urlsplit(hub.url).netloc
    with connect(hub.url, source) as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n{headers}\r\n".encode())
        return _status(sock)


def test_connections_past_the_per_client_cap_are_closed(make_hub: MakeHub):
    hub = make_hub(workers=1, env={"HFGIT_MAX_CONNECTIONS_PER_CLIENT": "3"})
    with ExitStack() as stack:
        for _ in range(3):
            stack.enter_context(connect(hub.url, "127.0.0.2"))
        assert _healthz(hub, "127.0.0.2") == b""
        assert _healthz(hub, "127.0.0.3") == b"HTTP/1.1 200 OK"
    assert _healthz(hub, "127.0.0.2") == b"HTTP/1.1 200 OK"


@contextmanager
def clone_not_read(target: PushTarget, source: str, headers: dict[str, str]):
    """An upload-pack whose answer (bigger than the socket buffers) nobody reads: its
    request stays in service once the status line has come."""
    body = pkt(f"want {target.main} {UPLOAD_CAPS}\n") + FLUSH + pkt("done\n")
    head = request_head(
        "POST",
        target.url,
        "/git-upload-pack",
        target.token,
        {
            "Content-Type": "application/x-git-upload-pack-request",
            "Content-Length": str(len(body)),
            **headers,
        },
    )
    with connect(target.url, source) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.sendall(head + body)
        answer = sock.recv(400)
        assert answer.startswith(b"HTTP/1.1 200"), answer
        yield


def _big_target(hub: Hub, git: Git, tmp_path: Path) -> PushTarget:
    target = PushTarget.create(hub, git, tmp_path)
    work = tmp_path / unique("big")
    git.run("clone", "-q", target.url, str(work), token=target.token)
    git.commit(work, {f"f{n}.bin": os.urandom(8 * 2**20) for n in range(4)})
    git.run("push", "-q", "origin", "main", cwd=work, token=target.token)
    target.main = git.run("rev-parse", "HEAD", cwd=work).stdout.strip()
    return target


def test_requests_past_the_per_client_cap_get_429(make_hub: MakeHub, git: Git, tmp_path: Path):
    hub = make_hub(workers=1, env={"HFGIT_MAX_REQUESTS_PER_CLIENT": "1"})
    target = _big_target(hub, git, tmp_path)
    # Without HFGIT_TRUST_PROXY, X-Forwarded-For is the client's own say: it never counts.
    with clone_not_read(target, "127.0.0.2", {"X-Forwarded-For": "192.0.2.1"}):
        answer = _healthz(hub, "127.0.0.2", "X-Forwarded-For: 192.0.2.2\r\n")
        assert answer == b"HTTP/1.1 429 Too Many Requests"
        assert _healthz(hub, "127.0.0.3") == b"HTTP/1.1 200 OK"


def test_behind_a_trusted_proxy_the_cap_is_per_forwarded_client(
    make_hub: MakeHub, git: Git, tmp_path: Path
):
    hub = make_hub(workers=1, env={"HFGIT_MAX_REQUESTS_PER_CLIENT": "1", "HFGIT_TRUST_PROXY": "1"})
    target = _big_target(hub, git, tmp_path)
    with clone_not_read(target, "127.0.0.2", {"X-Forwarded-For": "192.0.2.1"}):
        forwarded = "X-Forwarded-For: 198.51.100.7, 192.0.2.1\r\n"
        assert _healthz(hub, "127.0.0.2", forwarded) == b"HTTP/1.1 429 Too Many Requests"
        other = "X-Forwarded-For: 192.0.2.1, 192.0.2.2\r\n"
        assert _healthz(hub, "127.0.0.2", other) == b"HTTP/1.1 200 OK"


def test_a_head_over_64_kib_gets_431_from_the_loop(default_hub: Hub):
    host = urlsplit(default_hub.url).netloc
    padding = "x" * (70 * 1024)
    with connect(default_hub.url, "127.0.0.2") as sock:
        sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {host}\r\nX-Pad: {padding}\r\n\r\n".encode())
        assert _status(sock) == b"HTTP/1.1 431 Request Header Fields Too Large"


def test_expect_100_continue_is_answered_before_the_body(
    default_hub: Hub, git: Git, tmp_path: Path
):
    """curl sends big bodies only after ``100 Continue``; the loop says it once."""
    target = PushTarget.create(default_hub, git, tmp_path)
    body = pkt(f"want {target.main} {UPLOAD_CAPS}\n") + FLUSH + pkt("done\n")
    head = request_head(
        "POST",
        target.url,
        "/git-upload-pack",
        target.token,
        {
            "Content-Type": "application/x-git-upload-pack-request",
            "Content-Length": str(len(body)),
            "Expect": "100-continue",
        },
    )
    with connect(target.url, "127.0.0.2") as sock:
        sock.sendall(head)
        assert sock.recv(4096) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(body)
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
    assert answer.startswith(b"HTTP/1.1 200")
    assert b"100 Continue" not in answer
