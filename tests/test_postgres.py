"""PostgreSQL: several gatekeepers on one database, and failing closed when it is down."""

from __future__ import annotations

import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hfgit.accounts import Accounts
from hfgit.config import Settings
from hfgit.names import RepoId
from hubtest import Git, Postgres, start_server, stop_server, unique


def status_of(url: str | urllib.request.Request) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@pytest.fixture
def two_gatekeepers(postgres: Postgres, tmp_path: Path):
    """Two ``hfgit serve`` processes sharing one PostgreSQL database and data directory."""
    data_dir = tmp_path / "data"
    settings = Settings.load(data_dir, postgres.url)
    accounts = Accounts.open(settings)
    env = {"HFGIT_DATABASE_URL": postgres.url}
    first, first_url = start_server(data_dir, env=env, workers=1)
    second, second_url = start_server(data_dir, env=env, workers=1)
    try:
        yield accounts, first_url, second_url
    finally:
        stop_server(first)
        stop_server(second)
        accounts.store.dispose()


def test_push_on_one_gatekeeper_clone_on_another_and_refresh_applies_to_both(
    two_gatekeepers, git: Git, tmp_path: Path
):
    accounts, first_url, second_url = two_gatekeepers
    user = unique("pg")
    accounts.users.create_user(user)
    accounts.repos.create(RepoId.parse(f"{user}/model"), private=True)
    old, _ = accounts.tokens.create(user, "ci", "write")

    worktree = git.init_worktree(tmp_path / "wt", {"weights.txt": "v1\n"})
    git.run("push", f"{first_url}/{user}/model", "main", cwd=worktree, token=old)
    git.run("clone", f"{second_url}/{user}/model", str(tmp_path / "c"), token=old)
    assert (tmp_path / "c" / "weights.txt").read_text() == "v1\n"

    new = accounts.tokens.refresh(user, "ci")
    for url in (first_url, second_url):
        refused = git.run("ls-remote", f"{url}/{user}/model", token=old, check=False)
        assert refused.returncode != 0 and "Invalid username or password" in refused.stderr
        git.run("ls-remote", f"{url}/{user}/model", token=new)


def test_database_outage_fails_closed_with_503_and_recovers(
    two_gatekeepers, postgres: Postgres, git: Git
):
    accounts, url, _ = two_gatekeepers
    user = unique("pg")
    accounts.users.create_user(user)
    accounts.repos.create(RepoId.parse(f"{user}/public-model"))
    token, _ = accounts.tokens.create(user, "ci", "read")
    assert status_of(f"{url}/healthz")[0] == 200
    postgres.stop()
    try:
        assert status_of(f"{url}/healthz")[0] == 503
        status, body = status_of(f"{url}/{user}/public-model/info/refs?service=git-upload-pack")
        assert status == 503 and b"database" in body
        for path in ("/api/whoami-v2", "/login", "/settings/tokens"):
            request = urllib.request.Request(
                url + path, headers={"Authorization": f"Bearer {token}"}
            )
            assert status_of(request)[0] == 503, path
        result = git.run("ls-remote", f"{url}/{user}/public-model", check=False)
        assert result.returncode != 0 and "503" in result.stderr
    finally:
        postgres.start()
    assert status_of(f"{url}/healthz")[0] == 200
    git.run("ls-remote", f"{url}/{user}/public-model")
