"""Running the ``git`` binary safely: fixed arguments, a clean environment, no orphans.

Forges that run C git were bitten by what git reads besides its arguments: planted
``~/.gitconfig`` lines (``uploadpack.packObjectsHook``), hooks, argument injection
(``PERF-LEVERS.md`` §2.2). So git here gets an environment built from scratch (no system
or global config, ``HOME`` an empty directory hfgit owns, nothing inherited from the
server's environment), hooks pointed at ``/dev/null``, and only arguments hfgit wrote;
repository paths are the storage paths the gate resolved, after ``--``.

Each process runs in a session of its own, so that :meth:`GitProcess.close` can kill
the whole process group (``upload-pack`` forks ``pack-objects``) whether the answer was
sent, the client went away or the worker is exiting.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import os
import select
import selectors
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

#: Configuration every git run gets on its command line (protected config: a
#: repository's own ``config`` cannot override what only protected config may set).
BASE_CONFIG = (
    "core.hooksPath=/dev/null",
    "core.fsmonitor=false",
    "uploadpack.allowRefInWant=false",
    "uploadpack.allowSidebandAll=false",
)
#: What bounds a ``pack-objects``'s memory whatever the objects' sizes (``docs/limits.md``).
#: Blobs over 16 MiB are copied as they are stored, never inflated whole into the delta
#: window (``bigFileThreshold``); the window and the cache of found deltas are capped;
#: and pack files are mapped in 16 MiB windows, at most 64 MiB at a time, because every
#: mapped page read counts as the process's resident memory (a 125 MB pack sent whole
#: would otherwise be 125 MB resident).
PACK_MEMORY_CONFIG = (
    "core.bigFileThreshold=16m",
    "pack.windowMemory=64m",
    "pack.deltaCacheSize=32m",
    "core.packedGitWindowSize=16m",
    "core.packedGitLimit=64m",
)
#: Most bytes of a git process's stderr kept for the log.
STDERR_KEPT = 8 * 1024
CHUNK = 64 * 1024


@dataclass(frozen=True)
class GitBinary:
    """The ``git`` executable and the empty home directory it runs with."""

    path: str
    home: Path

    @classmethod
    def find(cls, data_dir: Path) -> GitBinary | None:
        """The ``git`` on PATH, or None; its ``HOME`` is ``<data_dir>/git-home``, kept empty."""
        path = shutil.which("git")
        if path is None:
            return None
        home = data_dir / "git-home"
        home.mkdir(parents=True, exist_ok=True)
        # Read-only: nothing git (or anyone through it) runs can plant a config there.
        home.chmod(0o500)
        return cls(os.path.abspath(path), home)

    def environment(self, *, protocol_v2: bool = False) -> dict[str, str]:
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home),
            "LC_ALL": "C",
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_CONFIG_GLOBAL": os.devnull,
            "GIT_TERMINAL_PROMPT": "0",
        }
        if protocol_v2:
            env["GIT_PROTOCOL"] = "version=2"
        return env

    def argv(self, config: Sequence[str], *args: str) -> list[str]:
        options = [part for item in (*BASE_CONFIG, *config) for part in ("-c", item)]
        return [self.path, *options, *args]

    def spawn(
        self,
        config: Sequence[str],
        *args: str,
        input: bytes = b"",
        protocol_v2: bool = False,
        pass_fds: Sequence[int] = (),
    ) -> GitProcess:
        return GitProcess(
            self.argv(config, *args),
            self.environment(protocol_v2=protocol_v2),
            cwd=self.home,
            input=input,
            pass_fds=pass_fds,
        )


class GitProcess:
    """One git process: input written without deadlock, output read in bounded chunks.

    Input that fits in the pipe (a fetch request nearly always does) is written at once;
    a larger one is fed by a thread, so that git can answer (and fill its stdout pipe)
    before it has read everything, without either side blocking the other. stderr is
    read in the same loop as stdout, so git never blocks on it either; its first
    :data:`STDERR_KEPT` bytes are kept. A thread per pipe would cost a request more than
    git's own run on a small repository.
    """

    def __init__(
        self,
        argv: list[str],
        env: dict[str, str],
        *,
        cwd: Path,
        input: bytes,
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.popen = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env=env,
            cwd=cwd,
            start_new_session=True,
            pass_fds=tuple(pass_fds),
        )
        _LIVE.add(self)
        self.stderr = b""
        self._kept = bytearray()
        self._finished = False
        self._feeder: threading.Thread | None = None
        stdin = self.popen.stdin
        assert stdin is not None
        if len(input) <= fcntl.fcntl(stdin.fileno(), fcntl.F_GETPIPE_SZ):
            self._feed(input)  # an empty pipe takes it all without blocking
        else:
            self._feeder = threading.Thread(target=self._feed, args=(input,), daemon=True)
            self._feeder.start()

    def _feed(self, data: bytes) -> None:
        stdin = self.popen.stdin
        assert stdin is not None
        try:
            view = memoryview(data)
            for start in range(0, len(view), CHUNK):
                stdin.write(view[start : start + CHUNK])
        except OSError:
            pass  # git stopped reading: it answers (or fails) with what it has
        finally:
            with contextlib.suppress(OSError):
                stdin.close()

    def _keep_stderr(self, chunk: bytes) -> None:
        if len(self._kept) < STDERR_KEPT:
            self._kept += chunk[: STDERR_KEPT - len(self._kept)]

    def chunks(self) -> Iterator[bytes]:
        """git's stdout, at most :data:`CHUNK` bytes at a time, as it comes."""
        assert self.popen.stdout is not None and self.popen.stderr is not None
        stdout, stderr = self.popen.stdout.fileno(), self.popen.stderr.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(stdout, selectors.EVENT_READ)
            selector.register(stderr, selectors.EVENT_READ)
            while stdout in selector.get_map():
                for key, _ in selector.select():
                    chunk = os.read(key.fd, CHUNK)
                    if not chunk:
                        selector.unregister(key.fd)
                    elif key.fd == stdout:
                        yield chunk
                    else:
                        self._keep_stderr(chunk)
        self._finished = True

    def close(self, grace: float = 5.0) -> int:
        """Stop the process group and reap it; returns git's exit status.

        A process whose output was read to the end gets ``grace`` seconds to exit by
        itself; any other (the client went away, an error) is killed at once. The group
        is killed before git itself is reaped: until then its pid, which is the group's
        id, cannot be reused, so the signal reaches no stranger. What is left of stderr
        is read then: nobody can write to it any more.
        """
        pid = self.popen.pid
        if self._finished:
            _wait_exit(pid, grace)
        _kill_group(pid)
        if self.popen.stdout is not None:
            self.popen.stdout.close()
        status = self.popen.wait()
        if self._feeder is not None:
            self._feeder.join(timeout=grace)
        if self.popen.stderr is not None:
            with contextlib.suppress(OSError):
                while chunk := os.read(self.popen.stderr.fileno(), CHUNK):
                    self._keep_stderr(chunk)
            self.popen.stderr.close()
        self.stderr = bytes(self._kept)
        _LIVE.discard(self)
        return status


def _wait_exit(pid: int, timeout: float) -> None:
    """Wait up to ``timeout`` for ``pid`` to exit, without reaping it.

    git exits within a millisecond of its last byte, and the answer is complete only
    once it has: a pidfd wakes the wait the moment it does, where polling would add its
    interval to every request. Without pidfds (a sandbox may refuse them) it polls.
    """
    try:
        pidfd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:
        _poll_exit(pid, timeout)
        return
    try:
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        poller.poll(timeout * 1000)
    finally:
        os.close(pidfd)


def _poll_exit(pid: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None:
                return
        except ChildProcessError:
            return
        time.sleep(0.001)


#: Every git process not yet closed, killed if the worker exits first.
_LIVE: set[GitProcess] = set()


@atexit.register
def kill_all() -> None:
    """Kill every git process group this process started and has not closed.

    For a worker that exits (or is aborted by gunicorn for a missed heartbeat) while
    requests are still relaying git's output.
    """
    for process in list(_LIVE):
        _kill_group(process.popen.pid)


def _kill_group(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
