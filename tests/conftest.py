"""Fixtures shared by every test module; the helpers they use live in ``hubtest``.

Kept apart because a ``conftest`` module cannot be imported by name: tests/credential
has a conftest of its own.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from hfgit.accounts import Accounts
from hfgit.config import Settings
from hubtest import (
    ENGINES,
    Git,
    Hub,
    Postgres,
    free_port,
    postgres_bin_dir,
    require_tool,
    start_server,
    stop_server,
)


def _session_hub(tmp_path_factory: pytest.TempPathFactory, engine: str) -> Iterator[Hub]:
    data_dir = tmp_path_factory.mktemp(f"hub-{engine}") / "data"
    settings = Settings.load(data_dir)
    accounts = Accounts.open(settings)
    process, url = start_server(data_dir, extra_args=["--engine", engine])
    try:
        yield Hub(url=url, data_dir=data_dir, accounts=accounts, process=process, engine=engine)
    finally:
        stop_server(process)
        accounts.store.dispose()


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
    return Git(tmp_path / "home")


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
        yield server
    finally:
        try:
            server.stop()
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)
