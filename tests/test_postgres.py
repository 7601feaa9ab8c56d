"""PostgreSQL: several gatekeepers on one database, and failing closed when it is down."""

from __future__ import annotations

from pathlib import Path

import pytest

from hfgit.accounts import Accounts
from hfgit.names import RepoId
from hubtest import Git, MakeHub, Postgres, http_request, unique


@pytest.fixture
def two_gatekeepers(
    postgres: Postgres, make_hub: MakeHub, tmp_path: Path
) -> tuple[Accounts, str, str]:
    """Two ``hfgit serve`` processes sharing one PostgreSQL database and data directory."""
    data_dir = tmp_path / "data"
    first = make_hub(data_dir=data_dir, database_url=postgres.url, workers=1)
    second = make_hub(data_dir=data_dir, database_url=postgres.url, workers=1)
    return first.accounts, first.url, second.url


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
    assert http_request("GET", f"{url}/healthz")[0] == 200
    postgres.stop()
    try:
        assert http_request("GET", f"{url}/healthz")[0] == 503
        status, _, body = http_request(
            "GET", f"{url}/{user}/public-model/info/refs?service=git-upload-pack"
        )
        assert status == 503 and b"database" in body
        for path in ("/api/whoami-v2", "/login", "/settings/tokens"):
            assert http_request("GET", url + path, token=token, bearer=True)[0] == 503, path
        result = git.run("ls-remote", f"{url}/{user}/public-model", check=False)
        assert result.returncode != 0 and "503" in result.stderr
    finally:
        postgres.start()
    assert http_request("GET", f"{url}/healthz")[0] == 200
    git.run("ls-remote", f"{url}/{user}/public-model")
