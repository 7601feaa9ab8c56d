"""``git ls-remote`` latency through ``hfgit serve`` (its defaults) beside hostile loads.

Issue 12's goal: a legitimate ``git ls-remote`` answers in under 2 s while 300
connections stall mid-body, and while 1,000 idle keep-alive connections are open. The
connections come from 50 loopback addresses (127.0.0.2 … 127.0.0.51), six or twenty
each, under the default per-client caps, so it is the design that is measured, not the
caps. For each load: ``--runs`` ls-remotes, one after the other, timed end to end
(git's start, credential helper, both HTTP requests); printed are the median and the
worst, and the load average of the machine before and after.

Run: ``python bench/slow_clients.py [--runs 20] [--workers 2]``
"""

from __future__ import annotations

import argparse
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
from contextlib import ExitStack
from pathlib import Path
from urllib.parse import urlsplit

from support import USER, BenchError, Git, ServerProcess, free_port, load_average

from hfgit.accounts import Accounts
from hfgit.config import Settings
from hfgit.names import RepoId

ADDRESSES = [f"127.0.0.{n}" for n in range(2, 52)]


def connect(url: str, index: int) -> socket.socket:
    parts = urlsplit(url)
    source = (ADDRESSES[index % len(ADDRESSES)], 0)
    return socket.create_connection((parts.hostname, parts.port), timeout=60, source_address=source)


def stall_bodies(stack: ExitStack, url: str, path: str, count: int) -> None:
    """POSTs that promise 1 MB and send 10 bytes."""
    host = urlsplit(url).netloc
    head = (
        f"POST {path}/git-upload-pack HTTP/1.1\r\nHost: {host}\r\n"
        "Content-Type: application/x-git-upload-pack-request\r\nContent-Length: 1000000\r\n\r\n"
    ).encode()
    for index in range(count):
        stack.enter_context(connect(url, index)).sendall(head + b"0000000000")


def idle_keepalive(stack: ExitStack, url: str, count: int) -> None:
    """Connections that made one request and stay open, idle."""
    host = urlsplit(url).netloc
    request = f"GET /healthz HTTP/1.1\r\nHost: {host}\r\n\r\n".encode()
    sockets = [stack.enter_context(connect(url, index)) for index in range(count)]
    for sock in sockets:
        sock.sendall(request)
    for sock in sockets:
        if not sock.recv(65536).startswith(b"HTTP/1.1 200"):
            raise RuntimeError("a keep-alive request was not answered")


def latencies(git: Git, url: str, runs: int) -> list[float]:
    return [git.timed("ls-remote", url) for _ in range(runs)]


def report(name: str, times: list[float]) -> None:
    median = statistics.median(times)
    print(f"{name:<34} median {median:6.3f} s   worst {max(times):6.3f} s   ({len(times)} runs)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, min(hard, 8192)), hard))
    work = Path(tempfile.mkdtemp(prefix="hfgit-slow-"))
    data_dir = work / "data"
    accounts = Accounts.open(Settings.load(data_dir))
    accounts.users.create_user(USER)
    token, _ = accounts.tokens.create(USER, "bench", "write")
    repo = RepoId("model", USER, "probe")
    accounts.repos.create(repo, private=True)
    git = Git(work / "home", token)
    port = free_port()
    command = [sys.executable, "-m", "hfgit.cli", "serve", "--data-dir", str(data_dir)]
    command += ["--port", str(port), "--workers", str(args.workers)]
    server = ServerProcess.start(command, port, work / "serve.log")
    url = f"{server.url}/{repo.url_path}"
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        cwd=Path(__file__).parent,
        capture_output=True,
        text=True,
    ).stdout.strip()
    print(f"hfgit commit {commit or '?'}, load before {load_average()}")
    try:
        tree = work / "tree"
        git.run("init", "-q", "-b", "main", str(tree))
        (tree / "README.md").write_text("probe\n")
        git.run("add", "-A", cwd=tree)
        git.run("commit", "-q", "-m", "probe", cwd=tree)
        git.run("push", "-q", url, "main", cwd=tree)
        report("no load", latencies(git, url, args.runs))
        with ExitStack() as stack:
            stall_bodies(stack, server.url, urlsplit(url).path, 300)
            report("300 stalled bodies, 50 addresses", latencies(git, url, args.runs))
        with ExitStack() as stack:
            idle_keepalive(stack, server.url, 1000)
            # The server closes idle connections after its keep-alive time (5 s): fewer
            # runs, so that all of them happen while the 1,000 are open.
            report("1000 idle keep-alive, 50 addresses", latencies(git, url, min(args.runs, 5)))
    except BenchError as error:
        print(error, file=sys.stderr)
        return 1
    finally:
        server.stop()
    print(f"load after {load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
