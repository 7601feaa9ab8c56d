"""Fixtures shared by every test module; the helpers they use live in ``hubtest``.

Kept apart because a ``conftest`` module cannot be imported by name: tests/credential
has a conftest of its own.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import pytest
import sqlalchemy as sa

# huggingface_hub reads its settings once, when it is first imported: set them before any
# test module imports it. No telemetry or update checks leave the machine, uploads use
# plain Git LFS (hfgit serves no Xet), and HF_HOME is per test (the ``hf_home`` fixture).
os.environ.update(
    {
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_DISABLE_UPDATE_CHECK": "1",
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_ETAG_TIMEOUT": "30",
        "HF_HUB_DOWNLOAD_TIMEOUT": "30",
        "HF_HUB_DISABLE_PROGRESS_BARS": "1",
        "HF_HOME": tempfile.mkdtemp(prefix="hfgit-hf-home-"),
    }
)

from hfgit.accounts import Accounts
from hfgit.accounts.tokens import Tokens
from hubtest import (
    ENGINES,
    SECRETS,
    Git,
    Hub,
    MakeHub,
    Postgres,
    free_port,
    install_lfs,
    open_accounts,
    postgres_bin_dir,
    require_tool,
    run_cli,
    running_hub,
    spawn,
    stop_server,
    unique,
    wait_healthy,
)
from lfs_support import AWS_ENV, BUCKET


@pytest.fixture(scope="session", autouse=True)
def remember_tokens() -> Iterator[None]:
    """Every token made in this process (``Hub.make_token``, the ``accounts`` fixture,
    direct calls) is remembered for :func:`pytest_sessionfinish`'s check of the logs."""
    create, refresh = Tokens.create, Tokens.refresh

    def remembered_create(self, *args, **kwargs):
        secret, record = create(self, *args, **kwargs)
        return SECRETS.token(secret), record

    def remembered_refresh(self, *args, **kwargs):
        return SECRETS.token(refresh(self, *args, **kwargs))

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Tokens, "create", remembered_create)
        patch.setattr(Tokens, "refresh", remembered_refresh)
        yield


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Fail the run if any server log the suite wrote holds any token the suite made.

    Only the log's name and the line number are printed, never the token.
    """
    factory = getattr(session.config, "_tmp_path_factory", None)
    logs: list[Path] = []
    if factory is not None and SECRETS.tokens:
        try:
            logs = list(factory.getbasetemp().glob("**/serve-*.log"))
        except OSError:
            logs = []
    leaks = SECRETS.leaks(logs)
    if not leaks:
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    lines = [f"  {name}: line {number}" for name, number in leaks[:50]]
    message = "A token made by the test suite appears in a server log:\n" + "\n".join(lines)
    if reporter is not None:
        reporter.write("\n")
        reporter.write_line(message, red=True)
    else:
        print(message)
    session.exitstatus = pytest.ExitCode.TESTS_FAILED


def _session_hub(tmp_path_factory: pytest.TempPathFactory, engine: str) -> Iterator[Hub]:
    data_dir = tmp_path_factory.mktemp(f"hub-{engine}") / "data"
    with running_hub(data_dir, extra_args=["--engine", engine]) as server:
        server.engine = engine
        yield server


@pytest.fixture
def make_hub(tmp_path: Path) -> Iterator[MakeHub]:
    """Servers of this test's own, for settings the shared ``hub`` must not have.

    Each call starts one (``data_dir`` may be shared, e.g. by two gatekeepers on one
    database); all are stopped when the test ends. A module-scoped fixture uses
    ``hubtest.running_hub`` directly instead.
    """
    with ExitStack() as stack:

        def make(
            *,
            data_dir: Path | None = None,
            env: Mapping[str, str] | None = None,
            workers: int = 2,
            extra_args: Sequence[str] = (),
            database_url: str | None = None,
        ) -> Hub:
            server = running_hub(
                data_dir or tmp_path / unique("hub") / "data",
                env=env,
                workers=workers,
                extra_args=extra_args,
                database_url=database_url,
            )
            return stack.enter_context(server)

        yield make


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    """A data directory of this test's own, for code run in-process or by another server."""
    return tmp_path / "data"


@pytest.fixture
def accounts(data_dir: Path) -> Iterator[Accounts]:
    """``data_dir`` set up as hfgit does (database included), with no server on it."""
    with open_accounts(data_dir) as opened:
        yield opened


@pytest.fixture(scope="session")
def git_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """One ``hfgit serve`` (gunicorn, 2 workers, the git engine) for the whole session."""
    yield from _session_hub(tmp_path_factory, "git")


@pytest.fixture(scope="session")
def hub(git_hub: Hub) -> Hub:
    """The server most tests use; fetch tests override it with ``engine_hub``."""
    return git_hub


@pytest.fixture(scope="session")
def dulwich_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """The same server with the dulwich engine, for the tests that run on both."""
    yield from _session_hub(tmp_path_factory, "dulwich")


@pytest.fixture(scope="session", params=ENGINES)
def engine_hub(request: pytest.FixtureRequest) -> Hub:
    """Each engine's session server in turn."""
    return request.getfixturevalue(f"{request.param}_hub")


@pytest.fixture(params=["v2", "v0"])
def protocol(request: pytest.FixtureRequest) -> str:
    """The protocol version the client asks for (the dulwich engine answers v0 to both)."""
    return request.param


@pytest.fixture
def git(tmp_path: Path) -> Git:
    """The real git in an isolated HOME of this test's own."""
    return Git(tmp_path / "home")


@pytest.fixture
def lfs_git(git: Git) -> Git:
    """``git`` with git-lfs's filters installed in its HOME (:func:`install_lfs`)."""
    return install_lfs(git)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL server (Debian's ``postgresql`` package) for the session."""
    bin_dir = postgres_bin_dir()
    if bin_dir is None:
        require_tool("initdb", "postgresql")
    assert bin_dir is not None
    data_dir = Path(tempfile.mkdtemp(prefix="hfgit-pg-"))
    if os.geteuid() == 0:
        shutil.chown(data_dir, "postgres", "postgres")
    server = Postgres(bin_dir, data_dir, free_port())
    server.run("initdb", "-D", str(data_dir), "-A", "trust", "-U", "hfgit", "--no-sync")
    server.start()
    try:
        # An operator upgrades a database hfgit does not keep itself, before serving it.
        run_cli(
            "db", "upgrade", "--data-dir", str(data_dir / "hfgit"), "--database-url", server.url
        )
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture
def fresh_postgres_url(postgres: Postgres) -> str:
    """A new, empty database on the session's PostgreSQL server."""
    name = f"fresh_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(postgres.url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    admin.dispose()
    return postgres.url.rsplit("/", 1)[0] + "/" + name


@pytest.fixture
def hf_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty HF_HOME for this test, for huggingface_hub in this process and in children."""
    from huggingface_hub import constants

    home = tmp_path / "hf-home"
    home.mkdir()
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HOME", str(home))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(constants, "HF_TOKEN_PATH", str(home / "token"))
    monkeypatch.setattr(constants, "HF_STORED_TOKENS_PATH", str(home / "stored_tokens"))
    return home


@pytest.fixture(scope="module")
def s3_endpoint(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A local S3 emulator: moto's server, on a free port."""
    port = free_port()
    log = tmp_path_factory.mktemp("moto") / "moto.log"
    command = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    process = spawn(command, log)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(endpoint, process, log, path="/moto-api/")
        yield endpoint
    finally:
        stop_server(process)


@pytest.fixture(scope="module")
def s3_client(s3_endpoint: str):
    """A boto3 client of the emulator, with the bucket ``lfs_support.BUCKET`` made."""
    import boto3

    client = boto3.client(
        "s3",
        endpoint_url=s3_endpoint,
        aws_access_key_id=AWS_ENV["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=AWS_ENV["AWS_SECRET_ACCESS_KEY"],
        region_name=AWS_ENV["AWS_DEFAULT_REGION"],
    )
    client.create_bucket(Bucket=BUCKET)
    return client
