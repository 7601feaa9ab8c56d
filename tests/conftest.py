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
from hfgit.config import Settings
from hubtest import (
    Git,
    Hub,
    Postgres,
    free_port,
    postgres_bin_dir,
    require_tool,
    start_server,
    stop_server,
)


@pytest.fixture(scope="session")
def hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """One ``hfgit serve`` (gunicorn, 2 workers) for the whole session."""
    data_dir = tmp_path_factory.mktemp("hub") / "data"
    settings = Settings.load(data_dir)
    accounts = Accounts.open(settings)
    process, url = start_server(data_dir)
    try:
        yield Hub(url=url, data_dir=data_dir, accounts=accounts, process=process)
    finally:
        stop_server(process)
        accounts.store.dispose()


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
