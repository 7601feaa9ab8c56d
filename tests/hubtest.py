"""Test support: a real ``hfgit serve`` on 127.0.0.1, the real ``git`` binary, PostgreSQL.

Tests set up users, repos and tokens through :class:`Hub` (the same database the server
reads, so changes apply on the next request) and drive git against ``hub.url``.
"""

from __future__ import annotations

import itertools
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from hfgit import policy
from hfgit.accounts import Accounts, make_scope
from hfgit.names import RepoId

IN_CI = os.environ.get("CI", "").lower() == "true"
#: The fetch engines every fetch test runs against, one session server each.
ENGINES = ("git", "dulwich")
ROOT = Path(__file__).resolve().parent.parent
_counter = itertools.count()


def require_tool(command: str, package: str) -> str:
    """Path of ``command``; skips (fails under CI) when it is not installed."""
    path = shutil.which(command)
    if path is None:
        message = f"needs {command!r}: apt-get install -y {package}"
        if IN_CI:
            pytest.fail(f"{message} (under CI=true nothing may skip)")
        pytest.skip(message)
    return path


def unique(prefix: str = "n") -> str:
    """A fresh name, so tests sharing one server never collide."""
    return f"{prefix}{next(_counter)}-{secrets.token_hex(3)}"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"hfgit serve exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"{url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"hfgit serve did not become healthy:\n{log.read_text()[-3000:]}")


def start_server(
    data_dir: Path,
    *,
    port: int | None = None,
    workers: int = 2,
    env: dict[str, str] | None = None,
    extra_args: Sequence[str] = (),
) -> tuple[subprocess.Popen, str]:
    """Run ``hfgit serve`` exactly as a user would; returns the process and its URL."""
    port = port or free_port()
    log = data_dir.parent / f"serve-{port}.log"
    command = [
        sys.executable,
        "-m",
        "hfgit.cli",
        "serve",
        "--data-dir",
        str(data_dir),
        "--port",
        str(port),
        "--workers",
        str(workers),
        *extra_args,
    ]
    with log.open("wb") as out:
        process = subprocess.Popen(
            command, stdout=out, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})}
        )
    url = f"http://127.0.0.1:{port}"
    wait_healthy(url, process, log)
    return process, url


def stop_server(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@dataclass
class Hub:
    """A running server plus direct access to its database for setting up tests."""

    url: str
    data_dir: Path
    accounts: Accounts
    process: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)
    #: The fetch engine the server runs (``hfgit serve --engine``).
    engine: str = "git"

    def cli(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``hfgit`` against this server's data directory."""
        result = subprocess.run(
            [sys.executable, "-m", "hfgit.cli", *args, "--data-dir", str(self.data_dir)],
            input=input,
            capture_output=True,
            text=True,
            env={**os.environ, **self.env},
            timeout=60,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"hfgit {args[0]} failed: {result.stderr}")
        return result

    def make_user(self, name: str | None = None, password: str | None = None) -> str:
        name = name or unique("u")
        self.accounts.create_user(name, password)
        return name

    def make_org(self, name: str | None = None, members: dict[str, str] | None = None) -> str:
        name = name or unique("o")
        self.accounts.create_org(name)
        for user, role in (members or {}).items():
            self.accounts.set_member(name, user, role)
        return name

    def make_repo(
        self,
        repo_id: str,
        *,
        private: bool = False,
        type: str = "model",
        gated: str = "off",
        creator: str | None = None,
    ) -> RepoId:
        rid = RepoId.parse(repo_id, type)
        self.accounts.create_repo(rid, private=private, gated=gated, creator=creator)
        return rid

    def make_token(
        self,
        user: str,
        role: str = "write",
        *,
        name: str | None = None,
        scopes: Sequence[str | policy.Scope] = (),
        can_read_gated: bool = False,
        expires_in_days: float | None = None,
    ) -> str:
        """A new token; scopes as ``"model:ns/name=repo.write"`` strings or Scope objects."""
        parsed = [s if isinstance(s, policy.Scope) else _parse_scope_text(s) for s in scopes]
        secret, _ = self.accounts.create_token(
            user,
            name or unique("t"),
            role,
            scopes=parsed,
            can_read_gated=can_read_gated,
            expires_in_days=expires_in_days,
        )
        return secret

    def repo_url(self, repo_id: str | RepoId, type: str = "model") -> str:
        rid = repo_id if isinstance(repo_id, RepoId) else RepoId.parse(repo_id, type)
        return f"{self.url}/{rid.url_path}"


def _parse_scope_text(text: str) -> policy.Scope:
    head, _, perms = text.partition("=")
    kind, _, entity = head.partition(":")
    return make_scope(kind, entity, perms.split(","))


class Git:
    """The real git binary in an isolated HOME, with no system or user config leaking in."""

    def __init__(self, home: Path, protocol: str | None = None) -> None:
        """``protocol`` ("v0"/"v2"): the protocol version git asks servers for."""
        self.home = home
        home.mkdir(parents=True, exist_ok=True)
        self.env = {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "PATH": os.environ["PATH"],
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_AUTHOR_NAME": "Test",
            "GIT_AUTHOR_EMAIL": "test@example.com",
            "GIT_COMMITTER_NAME": "Test",
            "GIT_COMMITTER_EMAIL": "test@example.com",
            "LC_ALL": "C",
        }
        if protocol is not None:
            self.env.update(
                {
                    "GIT_CONFIG_COUNT": "1",
                    "GIT_CONFIG_KEY_0": "protocol.version",
                    "GIT_CONFIG_VALUE_0": protocol.removeprefix("v"),
                }
            )

    def run(
        self,
        *args: str,
        cwd: Path | str | None = None,
        token: str | None = None,
        username: str = "user",
        check: bool = True,
        input: str | None = None,
        env: dict[str, str] | None = None,
        timeout: float = 300,
    ) -> subprocess.CompletedProcess[str]:
        """Run git; with ``token``, a throwaway credential helper answers with it.

        The token travels in an environment variable, never in a URL or argument.
        """
        config: list[str] = []
        extra = dict(env or {})
        if token is not None:
            extra["HFGIT_TEST_TOKEN"] = token
            extra["HFGIT_TEST_USER"] = username
            helper = (
                '!f() { test "$1" = get && echo "username=$HFGIT_TEST_USER" '
                '&& echo "password=$HFGIT_TEST_TOKEN"; }; f'
            )
            config = ["-c", "credential.helper=", "-c", f"credential.helper={helper}"]
        result = subprocess.run(
            ["git", *config, *args],
            cwd=cwd,
            capture_output=True,
            text=True,
            input=input,
            env={**self.env, **extra},
            timeout=timeout,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"git {args[0]} failed ({result.returncode}):\n{result.stderr}")
        return result

    def init_worktree(self, path: Path, files: dict[str, bytes | str] | None = None) -> Path:
        """A new work tree with one commit on ``main`` holding ``files``."""
        self.run("init", "-q", "-b", "main", str(path))
        self.commit(path, files or {"README.md": "hello\n"})
        return path

    def commit(self, path: Path, files: dict[str, bytes | str], message: str = "update") -> str:
        for name, content in files.items():
            target = path / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                target.write_bytes(content)
            else:
                target.write_text(content)
        self.run("add", "-A", cwd=path)
        self.run("commit", "-q", "-m", message, cwd=path)
        return self.run("rev-parse", "HEAD", cwd=path).stdout.strip()


class Postgres:
    """A throwaway PostgreSQL cluster on 127.0.0.1, stoppable to simulate an outage."""

    def __init__(self, bin_dir: Path, data_dir: Path, port: int) -> None:
        self.bin_dir = bin_dir
        self.data_dir = data_dir
        self.port = port
        self.url = f"postgresql+psycopg://hfgit@127.0.0.1:{port}/postgres"

    def run(self, *args: str) -> None:
        command = [str(self.bin_dir / args[0]), *args[1:]]
        if os.geteuid() == 0:
            # PostgreSQL refuses to run as root.
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, capture_output=True, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.data_dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.run(
            "pg_ctl",
            "-D",
            str(self.data_dir),
            "-o",
            options,
            "-w",
            "-l",
            str(self.data_dir / "log"),
            "start",
        )

    def stop(self) -> None:
        self.run("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")


def postgres_bin_dir() -> Path | None:
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for directory in candidates:
        if (directory / "initdb").exists():
            return directory
    found = shutil.which("initdb")
    return Path(found).parent if found else None
