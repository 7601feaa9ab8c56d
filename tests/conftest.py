"""Fixtures shared by every test module; the helpers they use live in ``hubtest``.

Kept apart because a ``conftest`` module cannot be imported by name: tests/credential
has a conftest of its own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack
from pathlib import Path

import pytest
import sqlalchemy as sa

from hfgit.accounts import Accounts
from hfgit.accounts.tokens import Tokens
from hubtest import (
    SECRETS,
    Git,
    Hub,
    MakeHub,
    Postgres,
    free_port,
    open_accounts,
    postgres_bin_dir,
    require_tool,
    run_cli,
    running_hub,
    unique,
)


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


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """One ``hfgit serve`` (gunicorn, 2 workers) for the whole session."""
    with running_hub(tmp_path_factory.mktemp("hub") / "data") as server:
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


@pytest.fixture
def git(tmp_path: Path) -> Git:
    """The real git in an isolated HOME of this test's own."""
    return Git(tmp_path / "home")


@pytest.fixture
def lfs_git(git: Git) -> Git:
    """``git`` with git-lfs's filters installed in its HOME; skips without git-lfs
    (fails under CI, like every missing tool)."""
    require_tool("git-lfs", "git-lfs")
    git.run("lfs", "install", "--skip-repo")
    return git


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
