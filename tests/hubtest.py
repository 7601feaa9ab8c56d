"""Test support: a real ``hfgit serve`` on 127.0.0.1, the real ``git`` binary, PostgreSQL.

Tests set up users, repos and tokens through :class:`Hub` (the same database the server
reads, so changes apply on the next request) and drive git against ``hub.url``.
"""

from __future__ import annotations

import base64
import itertools
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.cookiejar import CookieJar
from pathlib import Path
from typing import Any, Protocol

import pytest

from hfgit import policy
from hfgit.accounts import Accounts, make_scope
from hfgit.config import Settings
from hfgit.names import RepoId

IN_CI = os.environ.get("CI", "").lower() == "true"
#: The fetch engines every fetch test runs against, one session server each.
ENGINES = ("git", "dulwich")
ROOT = Path(__file__).resolve().parent.parent
_counter = itertools.count()


class SecretRegistry:
    """Every token the test suite made and every server log it wrote, for the session's
    last check (``conftest.pytest_sessionfinish``): no log may hold any of the tokens."""

    def __init__(self) -> None:
        self.tokens: set[str] = set()
        self.logs: set[Path] = set()

    def token(self, secret: str) -> str:
        self.tokens.add(secret)
        return secret

    def leaks(self, extra_logs: Sequence[Path] = ()) -> list[tuple[str, int]]:
        """(log file name, line number) of every line holding one of the tokens."""
        found = []
        for log in sorted(self.logs | set(extra_logs)):
            try:
                lines = log.read_text(errors="replace").splitlines()
            except OSError:
                continue
            for number, line in enumerate(lines, 1):
                if "hf_" in line and any(token in line for token in self.tokens):
                    found.append((log.name, number))
        return found


#: The session's registry (one process: the suite does not run in parallel workers).
SECRETS = SecretRegistry()


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


# The hfgit command line


def cli_command(*args: str) -> list[str]:
    """``hfgit ARGS`` through this interpreter, so no console script has to be on PATH."""
    return [sys.executable, "-m", "hfgit.cli", *args]


def run_cli(
    *args: str,
    env: Mapping[str, str] | None = None,
    input: str | bytes | None = None,
    check: bool = True,
    text: bool = True,
    cwd: Path | None = None,
    timeout: float = 60,
) -> subprocess.CompletedProcess[Any]:
    """Run ``hfgit ARGS`` as a user would; ``env`` is the whole environment (default ours).

    With ``check``, a non-zero exit fails the test with hfgit's stderr.
    """
    result = subprocess.run(
        cli_command(*args),
        input=input,
        capture_output=True,
        text=text,
        env=dict(env) if env is not None else None,
        cwd=cwd,
        timeout=timeout,
    )
    if check and result.returncode != 0:
        stderr = result.stderr if text else result.stderr.decode(errors="replace")
        raise AssertionError(f"hfgit {args[0]} exited {result.returncode}:\n{stderr}")
    if tuple(args[:2]) in (("token", "create"), ("token", "refresh")) and result.returncode == 0:
        stdout = result.stdout if text else result.stdout.decode(errors="replace")
        SECRETS.token(stdout.strip())
    return result


# Servers


def spawn(
    command: Sequence[str], log: Path, env: Mapping[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """Start a server process writing everything to ``log``, which tells why it died."""
    SECRETS.logs.add(log)
    with log.open("wb") as out:
        return subprocess.Popen(
            list(command),
            stdout=out,
            stderr=subprocess.STDOUT,
            env=dict(env) if env is not None else None,
        )


def wait_healthy(
    url: str,
    process: subprocess.Popen,
    log: Path | None = None,
    *,
    path: str = "/healthz",
    timeout: float = 30,
) -> None:
    """Return once ``url + path`` answers 200; fail with the log if the process dies first."""

    def tail() -> str:
        return log.read_text(errors="replace")[-3000:] if log is not None else "(no log)"

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[:4]} exited:\n{tail()}")
        try:
            with urllib.request.urlopen(f"{url}{path}", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"{process.args[:4]} did not become healthy:\n{tail()}")


def stop_server(process: subprocess.Popen) -> None:
    """Ask politely (gunicorn drains its workers on SIGTERM), then insist."""
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@contextmanager
def open_accounts(data_dir: Path, database_url: str | None = None) -> Iterator[Accounts]:
    """The data directory and database as hfgit creates them; the engine is disposed after."""
    accounts = Accounts.open(Settings.load(data_dir, database_url))
    try:
        yield accounts
    finally:
        accounts.store.dispose()


@contextmanager
def running_hub(
    data_dir: Path,
    *,
    env: Mapping[str, str] | None = None,
    workers: int = 2,
    extra_args: Sequence[str] = (),
    database_url: str | None = None,
) -> Iterator[Hub]:
    """``hfgit serve`` on a free port of 127.0.0.1, started exactly as a user would.

    The database is created here first, so the workers never race to create it; ``env``
    (``HFGIT_*`` settings) goes to the server and to :meth:`Hub.cli`. The server is
    stopped and the engine disposed however the block ends.
    """
    env = dict(env or {})
    if database_url is not None:
        env["HFGIT_DATABASE_URL"] = database_url
    with open_accounts(data_dir, database_url) as accounts:
        port = free_port()
        log = data_dir.parent / f"serve-{port}.log"
        command = cli_command(
            "serve",
            "--data-dir",
            str(data_dir),
            "--port",
            str(port),
            "--workers",
            str(workers),
            *extra_args,
        )
        process = spawn(command, log, {**os.environ, **env})
        try:
            url = f"http://127.0.0.1:{port}"
            wait_healthy(url, process, log)
            yield Hub(url, data_dir, accounts, process, env, log)
        finally:
            stop_server(process)


class MakeHub(Protocol):
    """The ``make_hub`` fixture: a server of the test's own, stopped after the test."""

    def __call__(
        self,
        *,
        data_dir: Path | None = None,
        env: Mapping[str, str] | None = None,
        workers: int = 2,
        extra_args: Sequence[str] = (),
        database_url: str | None = None,
    ) -> Hub: ...


def worker_memory(hub: Hub, field: str = "VmRSS") -> list[int]:
    """``field`` of ``/proc/PID/status`` (in bytes) for each worker of the hub's server."""
    values = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            text = status.read_text()
        except OSError:
            continue
        if f"PPid:\t{hub.process.pid}\n" not in text:
            continue
        for line in text.splitlines():
            if line.startswith(f"{field}:"):
                values.append(int(line.split()[1]) * 1024)
    return values


# HTTP by hand, for what git does not show


def basic_auth(token: str, username: str = "user") -> str:
    """An ``Authorization`` value as git sends it: the token is the Basic password."""
    return "Basic " + base64.b64encode(f"{username}:{token}".encode()).decode()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    """For ``urllib.request.build_opener``: a redirect is the answer, not followed."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def http_request(
    method: str,
    url: str,
    *,
    token: str | None = None,
    bearer: bool = False,
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 60,
) -> tuple[int, dict[str, str], bytes]:
    """One request; returns status, headers and body, error statuses included.

    ``token`` goes in a Basic header as git sends it, or as ``Bearer`` (as
    huggingface_hub sends it); never in the URL.
    """
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    if token is not None:
        request.add_header("Authorization", f"Bearer {token}" if bearer else basic_auth(token))
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


class Visitor:
    """A cookie-keeping HTTP client that does not follow redirects."""

    def __init__(self, url: str, headers: dict[str, str] | None = None) -> None:
        self.url = url
        self.headers = headers or {}
        self.jar = CookieJar()
        self.opener = urllib.request.build_opener(
            urllib.request.HTTPCookieProcessor(self.jar), NoRedirect
        )

    def request(self, path: str, form: dict[str, str] | None = None):
        data = urllib.parse.urlencode(form).encode() if form is not None else None
        request = urllib.request.Request(f"{self.url}{path}", data=data, headers=self.headers)
        try:
            with self.opener.open(request, timeout=30) as response:
                return response.status, response.headers, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.headers, error.read().decode()

    def forget_session(self) -> None:
        """Drop the session cookie only, as when it expires; the device cookie stays."""
        for cookie in list(self.jar):
            if cookie.name == "hfgit_session":
                self.jar.clear(cookie.domain, cookie.path, cookie.name)

    def login(self, user: str, password: str):
        text = self.request("/login")[2]
        match = re.search(r'name="csrf_token" value="([^"]+)"', text)
        assert match, text
        return self.request(
            "/login", {"csrf_token": match.group(1), "username": user, "password": password}
        )


@dataclass
class Hub:
    """A running server plus direct access to its database for setting up tests."""

    url: str
    data_dir: Path
    accounts: Accounts
    process: subprocess.Popen | None = None
    env: dict[str, str] = field(default_factory=dict)
    log: Path | None = None
    #: The fetch engine the server runs (``hfgit serve --engine``).
    engine: str = "git"

    def cli(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``hfgit`` against this server's data directory (and database)."""
        return run_cli(
            *args,
            "--data-dir",
            str(self.data_dir),
            env={**os.environ, **self.env},
            input=input,
            check=check,
        )

    def make_user(self, name: str | None = None, password: str | None = None) -> str:
        name = name or unique("u")
        self.accounts.users.create_user(name, password)
        return name

    def make_org(self, name: str | None = None, members: dict[str, str] | None = None) -> str:
        name = name or unique("o")
        self.accounts.users.create_org(name)
        for user, role in (members or {}).items():
            self.accounts.users.set_member(name, user, role)
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
        self.accounts.repos.create(rid, private=private, gated=gated, creator=creator)
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
        secret, _ = self.accounts.tokens.create(
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


def install_lfs(git: Git) -> Git:
    """``git`` with git-lfs's filters installed in its HOME; skips without git-lfs
    (fails under CI, like every missing tool)."""
    require_tool("git-lfs", "git-lfs")
    git.run("lfs", "install", "--skip-repo")
    return git


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
