"""Accounts and repositories over their life: disable, enable, delete, leave an org, move.

Every change is made with the ``hfgit`` command line against the running server's data
directory, and every effect is seen through the server: real git and git-lfs, the
settings pages, and ``huggingface_hub``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import sqlalchemy as sa
from huggingface_hub import HfApi
from huggingface_hub.utils import HfHubHTTPError

from hfgit.names import RepoId
from hfgit.store import audit_log
from hubtest import Git, Hub, Visitor, http_request, unique
from lfs_support import batch, lfs_worktree

PASSWORD = "lifecycle password"


def _status(error: HfHubHTTPError) -> int:
    assert error.response is not None
    return error.response.status_code


def _whoami_status(hub: Hub, token: str) -> int:
    try:
        HfApi(endpoint=hub.url, token=token).whoami()
    except HfHubHTTPError as error:
        return _status(error)
    return 200


def test_disabled_user_is_refused_everywhere_until_enabled(hub: Hub, lfs_git: Git, tmp_path: Path):
    user = hub.make_user(password=PASSWORD)
    repo = hub.make_repo(f"{user}/{unique('m')}", private=True)
    token = hub.make_token(user, "write", name="laptop")
    weights = os.urandom(64 * 1024)
    item = {"oid": hashlib.sha256(weights).hexdigest(), "size": len(weights)}
    work, _ = lfs_worktree(lfs_git, tmp_path / "work", weights)
    url = hub.repo_url(repo)
    lfs_git.run("push", "-q", url, "main", cwd=work, token=token)
    # A signed download URL issued before the user is disabled, and a logged-in browser.
    status, _, answer = batch(hub, repo, "download", [item], token)
    assert status == 200, answer
    href = answer["objects"][0]["actions"]["download"]["href"]
    browser = Visitor(hub.url)
    assert browser.login(user, PASSWORD)[0] == 303
    assert browser.request("/settings/tokens")[0] == 200

    hub.cli("user", "disable", user)

    refused = lfs_git.run("ls-remote", url, token=token, check=False)
    assert refused.returncode != 0 and "This account is disabled" in refused.stderr
    assert batch(hub, repo, "download", [item], token)[0] == 403
    status, _, body = http_request("GET", href)
    assert status == 403 and b"disabled" in body
    assert _whoami_status(hub, token) == 403
    status, headers, _ = browser.request("/settings/tokens")
    assert status == 303 and headers["Location"].startswith("/login")
    status, _, page = Visitor(hub.url).login(user, PASSWORD)
    assert status == 403 and "This account is disabled" in page
    # Nothing was deleted.
    listed = json.loads(hub.cli("token", "list", user, "--json").stdout)
    assert [t["name"] for t in listed] == ["laptop"]

    hub.cli("user", "enable", user)

    lfs_git.run("clone", "-q", url, str(tmp_path / "clone"), token=token)
    assert (tmp_path / "clone" / "model.safetensors").read_bytes() == weights
    assert http_request("GET", href)[0] == 200
    assert _whoami_status(hub, token) == 200
    assert Visitor(hub.url).login(user, PASSWORD)[0] == 303


def test_disable_and_enable_say_when_nothing_changes(hub: Hub):
    user = hub.make_user()
    assert "tokens and sessions are refused" in hub.cli("user", "disable", user).stderr
    assert "already disabled" in hub.cli("user", "disable", user).stderr
    hub.cli("user", "enable", user)
    assert "is not disabled" in hub.cli("user", "enable", user).stderr
    missing = hub.cli("user", "disable", unique("nobody"), check=False)
    assert missing.returncode == 1 and "No user named" in missing.stderr


def test_user_delete_needs_repositories_moved_first(hub: Hub, git: Git, tmp_path: Path):
    user, colleague = hub.make_user(), hub.make_user()
    org = hub.make_org(members={user: "admin", colleague: "write"})
    name = unique("m")
    hub.make_repo(f"{user}/{name}", private=True)
    token = hub.make_token(user, "write")
    work = git.init_worktree(tmp_path / "work")
    git.run("push", f"{hub.url}/{user}/{name}", "main", cwd=work, token=token)

    refused = hub.cli("user", "delete", user, check=False)
    assert refused.returncode == 1
    assert f"model {user}/{name}" in refused.stderr and "hfgit repo move" in refused.stderr
    git.run("ls-remote", f"{hub.url}/{user}/{name}", token=token)  # nothing was deleted

    hub.cli("repo", "move", f"{user}/{name}", f"{org}/{name}")
    hub.cli("user", "delete", user)

    gone = git.run("ls-remote", f"{hub.url}/{org}/{name}", token=token, check=False)
    assert gone.returncode != 0 and "Invalid username or password" in gone.stderr
    assert _whoami_status(hub, token) == 401
    git.run(
        "clone", f"{hub.url}/{org}/{name}", str(tmp_path / "kept"), token=hub.make_token(colleague)
    )
    assert (tmp_path / "kept" / "README.md").exists()
    # The name is free again, and the new user inherits no membership of the old one.
    hub.cli("user", "add", user)
    fresh = hub.make_token(user, "read")
    assert HfApi(endpoint=hub.url, token=fresh).whoami()["orgs"] == []
    hidden = git.run("ls-remote", f"{hub.url}/{org}/{name}", token=fresh, check=False)
    assert hidden.returncode != 0 and "not found" in hidden.stderr.lower()


def test_org_member_removal_takes_effect_on_the_next_request(hub: Hub, git: Git, tmp_path: Path):
    user = hub.make_user()
    org = hub.make_org(members={user: "write"})
    repo = hub.make_repo(f"{org}/{unique('m')}", private=True)
    token = hub.make_token(user, "write")
    url = hub.repo_url(repo)
    work = git.init_worktree(tmp_path / "work")
    git.run("push", url, "main", cwd=work, token=token)
    assert [o["name"] for o in HfApi(endpoint=hub.url, token=token).whoami()["orgs"]] == [org]

    hub.cli("org", "member", org, user, "--remove")

    refused = git.run("ls-remote", url, token=token, check=False)
    assert refused.returncode != 0 and "not found" in refused.stderr.lower()
    assert HfApi(endpoint=hub.url, token=token).whoami()["orgs"] == []


def _audit_events(hub: Hub, event: str) -> list[dict]:
    with hub.accounts.store.begin() as conn:
        rows = conn.execute(sa.select(audit_log.c.detail).where(audit_log.c.event == event))
        return [row.detail for row in rows]


def test_repo_move_takes_git_lfs_and_scopes_along_and_frees_the_old_name(
    hub: Hub, lfs_git: Git, tmp_path: Path
):
    user = hub.make_user()
    org = hub.make_org(members={user: "admin"})
    old = hub.make_repo(f"{user}/{unique('m')}", private=True)
    new = RepoId("model", org, unique("moved"))
    writer = hub.make_token(user, "write")
    scoped = hub.make_token(user, "fineGrained", scopes=[f"model:{old.repo_id}=repo.write"])
    weights = os.urandom(128 * 1024)
    work, _ = lfs_worktree(lfs_git, tmp_path / "work", weights)
    lfs_git.run("push", "-q", hub.repo_url(old), "main", cwd=work, token=writer)
    never = f"{hub.url}/{user}/{unique('never')}.git/info/refs?service=git-upload-pack"
    old_refs = f"{hub.repo_url(old)}.git/info/refs?service=git-upload-pack"

    moved = hub.cli("repo", "move", old.repo_id, new.repo_id)
    assert new.repo_id in moved.stderr

    lfs_git.run("clone", "-q", hub.repo_url(new), str(tmp_path / "clone"), token=writer)
    assert (tmp_path / "clone" / "model.safetensors").read_bytes() == weights
    lfs_git.run("push", "-q", hub.repo_url(new), "main:scoped", cwd=work, token=scoped)
    fine = HfApi(endpoint=hub.url, token=scoped).whoami()["auth"]["accessToken"]["fineGrained"]
    assert [s["entity"]["name"] for s in fine["scoped"]] == [new.repo_id]
    # The old name answers exactly as a name that never existed.
    for token in (writer, scoped):
        a, b = http_request("GET", old_refs, token=token), http_request("GET", never, token=token)
        assert a[0] == b[0] == 404 and a[2] == b[2]
    assert _audit_events(hub, "repo.move")[-1] == {
        "repo": f"model {new.repo_id}",
        "from": f"model {old.repo_id}",
    }

    # The old name is free; the scope made for the moved repository does not cover it.
    HfApi(endpoint=hub.url, token=writer).create_repo(old.repo_id, private=True)
    lfs_git.run("ls-remote", hub.repo_url(old), token=writer)
    hidden = lfs_git.run("ls-remote", hub.repo_url(old), token=scoped, check=False)
    assert hidden.returncode != 0 and "not found" in hidden.stderr.lower()
    clone = lfs_git.run("clone", hub.repo_url(old), str(tmp_path / "new"), token=writer)
    assert "empty repository" in clone.stderr


@pytest.mark.parametrize(
    ("target", "needle"),
    [
        ("existing", "already exists"),
        ("missing-ns", "No user or organization"),
        ("dataset", "No dataset named"),
    ],
)
def test_repo_move_refusals_change_nothing(hub: Hub, git: Git, target: str, needle: str):
    user = hub.make_user()
    repo = hub.make_repo(f"{user}/{unique('m')}")
    other = hub.make_repo(f"{user}/{unique('m')}")
    args = {
        "existing": [repo.repo_id, other.repo_id],
        "missing-ns": [repo.repo_id, f"{unique('nobody')}/x"],
        "dataset": ["--type", "dataset", repo.repo_id, f"{user}/y"],
    }[target]
    refused = hub.cli("repo", "move", *args, check=False)
    assert refused.returncode == 1 and needle in refused.stderr
    assert hub.accounts.repos.find(repo) is not None
    git.run("ls-remote", hub.repo_url(repo))
