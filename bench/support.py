"""What every benchmark needs around the thing it measures.

A free port, a server process started and stopped cleanly, the real git in an isolated
HOME with a token it gets only through a credential helper, the repositories it
measures built with git's own plumbing, and the machine's load. The benchmarks are
scripts run from this directory, so they import this module as ``support``; it must not
import from ``tests/``, which the benchmarks do not ship with.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

#: The account the benchmarks create, own their repositories with and push as.
USER = "bench"
#: The variable that carries the token to the credential helper, and only to it: a token
#: is never in a URL, an argument or the output.
TOKEN_ENV = "BENCH_GIT_TOKEN"
#: Who commits in the benchmarks' repositories, in git's environment and in fast-import.
_NAME = "Bench"
_EMAIL = "bench@example.com"


class BenchError(RuntimeError):
    """A step of a benchmark failed; the message says which and why."""


def free_port() -> int:
    """A port nothing listens on now, so parallel runs and other services do not clash."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def load_average(windows: int = 3, digits: int = 2) -> str:
    """The first ``windows`` load averages (1, 5, 15 minutes).

    On a shared machine this says how much else ran next to the benchmark, so it is
    printed before and after.
    """
    return " ".join(f"{value:.{digits}f}" for value in os.getloadavg()[:windows])


def closing_line(started: float, load_before: str) -> str:
    """A benchmark's last line: how long it ran (since ``time.perf_counter()`` was
    ``started``) and the machine's load before and after."""
    spent = time.perf_counter() - started
    return f"total {spent:.0f} s; load average before {load_before}, after {load_average()}"


# Server processes


class ServerProcess:
    """A server the benchmark runs itself on 127.0.0.1, logging to a file.

    Use :meth:`start`: it returns only once the server answers, so the first timed
    request does not also measure the server's start-up.
    """

    def __init__(self, process: subprocess.Popen, port: int, log: Path) -> None:
        self.process = process
        self.url = f"http://127.0.0.1:{port}"
        self.log = log

    @classmethod
    def start(
        cls,
        command: list[str],
        port: int,
        log: Path,
        *,
        probe: str = "/healthz",
        env: Mapping[str, str] | None = None,
        timeout: float = 30,
    ) -> ServerProcess:
        """Run ``command`` (which listens on ``port``) until ``probe`` gets any HTTP answer.

        A 404 counts: a plain git server has no health page, and any answer means it
        listens. ``env`` is added to this process's environment.
        """
        with log.open("wb") as out:
            process = subprocess.Popen(
                command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
            )
        server = cls(process, port, log)
        url = server.url + probe
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BenchError(f"server for {url} exited:\n{server.log_tail()}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return server
            except urllib.error.HTTPError:
                return server
            except OSError:
                time.sleep(0.1)
        server.stop()
        raise BenchError(f"server for {url} did not answer in {timeout} s:\n{server.log_tail()}")

    def log_tail(self) -> str:
        """The end of the server's log, which says why it failed."""
        return self.log.read_text(errors="replace")[-3000:]

    def stop(self, timeout: float = 20) -> None:
        """Ask the server to shut down; kill it if it has not after ``timeout`` seconds."""
        self.process.terminate()
        try:
            self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def rss_mib(self) -> float:
        """The largest resident memory of the server and its direct children (workers)."""
        pid = self.process.pid
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except FileNotFoundError:
            return 0.0
        return max(rss_mib(p) for p in (pid, *map(int, children)))

    @contextmanager
    def peak_rss(self, peaks: list[float]) -> Iterator[None]:
        """Sample :meth:`rss_mib` while the block runs; append the largest value seen.

        Sampled every 20 ms from a thread: a worker that buffers a whole object shows up
        even if it frees the memory before the block ends.
        """
        done = threading.Event()
        seen = [0.0]

        def sample() -> None:
            while not done.is_set():
                seen[0] = max(seen[0], self.rss_mib())
                done.wait(0.02)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()
            peaks.append(seen[0])


def rss_mib(pid: int) -> float:
    """The resident MiB of one process (0 once it has exited)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (FileNotFoundError, ProcessLookupError):
        pass  # the process exited meanwhile (a git child that finished)
    return 0.0


# git


def git_env(home: Path) -> dict[str, str]:
    """The environment of a git that reads no configuration but ``home``'s and never prompts.

    The machine's and the user's git configuration (helpers, ``url.*.insteadOf``,
    protocol versions) would change what is measured, and a prompt would hang a
    benchmark. Commits get a fixed identity and messages are in English (``LC_ALL=C``).
    """
    return {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / ".config"),
        "PATH": os.environ["PATH"],
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_TERMINAL_PROMPT": "0",
        "GIT_AUTHOR_NAME": _NAME,
        "GIT_AUTHOR_EMAIL": _EMAIL,
        "GIT_COMMITTER_NAME": _NAME,
        "GIT_COMMITTER_EMAIL": _EMAIL,
        "LC_ALL": "C",
    }


class Git:
    """The real git in an isolated HOME; a throwaway credential helper supplies the token.

    The token lives in an environment variable of the git process only (``TOKEN_ENV``,
    changeable in :attr:`env`), never in a URL, an argument or the output. The helper is
    configured for every server alike; git asks it only after a 401.
    """

    def __init__(self, home: Path, token: str = "") -> None:
        home.mkdir(parents=True, exist_ok=True)
        self.env = {**git_env(home), TOKEN_ENV: token}
        answer = f'echo username={USER} && echo "password=${TOKEN_ENV}"'
        helper = f'!f() {{ test "$1" = get && {answer}; }}; f'
        self.config = ["-c", "credential.helper=", "-c", f"credential.helper={helper}"]

    def run(
        self,
        *args: str,
        cwd: Path | None = None,
        input: bytes | None = None,
        timeout: float = 600,
    ) -> bytes:
        """Run git; return its output, or raise :class:`BenchError` with its error."""
        result = subprocess.run(
            ["git", *self.config, *args],
            cwd=cwd,
            input=input,
            capture_output=True,
            env=self.env,
            timeout=timeout,
        )
        if result.returncode != 0:
            raise BenchError(
                f"git {' '.join(args[:2])} failed ({result.returncode}):\n"
                f"{result.stderr.decode(errors='replace')[-2000:]}"
            )
        return result.stdout

    def timed(self, *args: str, cwd: Path | None = None) -> float:
        """Run git; return the wall time it took in seconds."""
        start = time.perf_counter()
        self.run(*args, cwd=cwd)
        return time.perf_counter() - start

    def head(self, git_dir: Path) -> str:
        """The commit ``main`` points at: what a clone or a push must have left there."""
        return self.run("--git-dir", str(git_dir), "rev-parse", "refs/heads/main").decode().strip()

    def init_bare(self, path: Path) -> Path:
        """An empty bare repository whose default branch is ``main``."""
        self.run("init", "--bare", "-q", "-b", "main", str(path))
        return path

    def import_bare(self, path: Path, stream: bytes) -> str:
        """A new bare repository holding a fast-import ``stream``; returns its ``main``."""
        self.init_bare(path)
        self.run("--git-dir", str(path), "fast-import", "--quiet", input=stream)
        return self.head(path)

    def seed(self, source: Path, target: Path) -> None:
        """Copy ``source``'s main into an existing bare repo, packed the same way everywhere.

        Servers that read the same bytes from disk differ only in how they serve them.
        """
        self.run("--git-dir", str(source), "push", "-q", str(target), "main")
        self.run("--git-dir", str(target), "repack", "-adq")


# Repositories as fast-import streams: built by git in one process, the same every time.


def history_stream(commits: int, files: int = 50, seed: int = 2) -> bytes:
    """``commits`` commits, each rewriting three ~2 KB text files (all of them at first)."""
    rng = random.Random(seed)
    words = [f"{rng.getrandbits(32):08x}" for _ in range(4000)]
    parts: list[bytes] = []
    for i in range(commits):
        message = f"change {i}\n".encode()
        parts.append(b"commit refs/heads/main\n")
        parts.append(_committer(1_700_000_000 + 60 * i))
        parts.append(b"data %d\n%s\n" % (len(message), message))
        touched = range(files) if i == 0 else rng.sample(range(files), 3)
        for f in touched:
            lines = (" ".join(rng.choices(words, k=8)) for _ in range(28))
            content = ("\n".join(lines) + "\n").encode()
            parts.append(b"M 100644 inline src/file%02d.txt\n" % f)
            parts.append(b"data %d\n%s\n" % (len(content), content))
    return b"".join(parts)


def bigfiles_stream(count: int, size: int, seed: int = 3) -> bytes:
    """One commit with ``count`` incompressible files of ``size`` bytes each.

    Random bytes do not delta or compress, so the pack is as large as the files.
    """
    rng = random.Random(seed)
    message = b"add weights\n"
    parts = [
        b"commit refs/heads/main\n",
        _committer(1_700_000_000),
        b"data %d\n%s\n" % (len(message), message),
    ]
    for index in range(count):
        parts.append(b"M 100644 inline model-%d.bin\ndata %d\n" % (index, size))
        parts.append(rng.randbytes(size) + b"\n")
    return b"".join(parts)


def _committer(timestamp: int) -> bytes:
    return f"committer {_NAME} <{_EMAIL}> {timestamp} +0000\n".encode()


# The whole process tree of a server: workers, and the git processes they run.


def tree_pids(root: int) -> list[int]:
    """``root`` and every live descendant, found through each thread's ``children``."""
    pids, index = [root], 0
    while index < len(pids):
        try:
            for task in Path(f"/proc/{pids[index]}/task").iterdir():
                pids.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass  # the process exited while it was read
        index += 1
    return pids


def tree_usage(root: int) -> tuple[float, float]:
    """(resident MiB summed over the tree, CPU seconds of the tree so far).

    CPU counts each live process's ``utime + stime`` and ``cutime + cstime``: a git child
    that has exited and been waited for is in its parent's ``cutime``, so the difference
    of two readings includes every ``pack-objects`` that ran in between.
    """
    rss, ticks = 0.0, 0
    for pid in tree_pids(root):
        rss += rss_mib(pid)
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += sum(int(value) for value in fields[11:15])
    return rss, ticks / os.sysconf("SC_CLK_TCK")


def raw_dulwich_server(
    root: Path, log: Path, *, workers: int, threads: int, timeout: int
) -> ServerProcess:
    """dulwich's own WSGI app (``_dulwich_app``) under gunicorn with hfgit serve's worker
    settings: the reference without hfgit's gate, serving bare repositories under ``root``."""
    from hfgit.serve import ACCESS_LOG_FORMAT

    port = free_port()
    command = [sys.executable, "-m", "gunicorn", "--worker-class", "gthread"]
    command += ["--workers", str(workers), "--threads", str(threads)]
    command += ["--timeout", str(timeout), "--keep-alive", "5", "--bind", f"127.0.0.1:{port}"]
    command += ["--access-logfile", "-", "--access-logformat", ACCESS_LOG_FORMAT]
    bench_dir = str(Path(__file__).resolve().parent)
    command += ["--no-control-socket", "--pythonpath", bench_dir, "_dulwich_app:create_app()"]
    env = {"BENCH_DULWICH_ROOT": str(root)}
    return ServerProcess.start(command, port, log, probe="/", env=env)
