"""A repository's storage is opened only as what it is: a plain directory of its own.

If a repository's directory is replaced by a symlink (to another repository), following
it would serve the target's objects under the first repository's permissions.
"""

from __future__ import annotations

import os
import shutil
import uuid
from pathlib import Path

import pytest

from hfgit.accounts import Accounts, StorageUnavailable
from hfgit.names import RepoId
from hubtest import Git, Hub, http_request
from lfs_support import batch, blob, upload

UNAVAILABLE = "This repository's storage is unavailable."


def test_symlinked_storage_is_served_by_no_surface(hub: Hub, git: Git, tmp_path: Path) -> None:
    user = hub.make_user()
    token = hub.make_token(user, "write")
    decoy, secret = hub.make_repo(f"{user}/decoy"), hub.make_repo(f"{user}/secret", private=True)
    work = git.init_worktree(tmp_path / "secret", {"SECRET.txt": "only for the owner\n"})
    git.run("push", "-q", hub.repo_url(secret), "main", cwd=work, token=token)
    data, item = blob(1000)
    upload(hub, secret, token, data, item)
    secret_head = git.run("rev-parse", "main", cwd=work).stdout.strip()

    decoy_path = hub.accounts.repos.path(hub.accounts.repos.get(decoy))
    secret_path = hub.accounts.repos.path(hub.accounts.repos.get(secret))
    shutil.rmtree(decoy_path)
    os.symlink(secret_path, decoy_path)
    # A reader of the public decoy must not reach the private repository through it.
    reader = hub.make_token(hub.make_user(), "read")

    listed = git.run("ls-remote", hub.repo_url(decoy), token=reader, check=False)
    assert listed.returncode != 0
    assert f"remote: {UNAVAILABLE}" in listed.stderr
    assert secret_head not in listed.stdout

    cloned = git.run("clone", hub.repo_url(decoy), str(tmp_path / "c"), token=reader, check=False)
    assert cloned.returncode != 0
    assert not (tmp_path / "c" / "SECRET.txt").exists()

    for service in ("git-upload-pack", "git-receive-pack"):
        status, _, body = http_request(
            "GET", f"{hub.repo_url(decoy)}/info/refs?service={service}", token=token
        )
        assert status == 503 and secret_head.encode() not in body
    status, _, body = http_request(
        "POST",
        f"{hub.repo_url(decoy)}/git-upload-pack",
        token=token,
        body=f"0032want {secret_head}\n00000009done\n".encode(),
        headers={"Content-Type": "application/x-git-upload-pack-request"},
    )
    assert status == 503

    status, _, answer = batch(hub, decoy, "download", [item], reader)
    assert status == 503 and answer["message"] == UNAVAILABLE

    assert hub.log is not None
    assert f"refusing to serve {decoy}: its storage" in hub.log.read_text()
    assert token not in hub.log.read_text()
    # The target itself is untouched and still served to its owner.
    assert git.run("ls-remote", hub.repo_url(secret), token=token).stdout.startswith(secret_head)


def test_creation_is_never_redirected(
    accounts: Accounts, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    accounts.users.create_user("alice")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    planted = uuid.UUID(int=0xBAD)
    monkeypatch.setattr(uuid, "uuid4", lambda: planted)
    link = accounts.repos_dir / f"{planted.hex}.git"

    for plant in (lambda: os.symlink(elsewhere, link), lambda: link.mkdir()):
        plant()
        with pytest.raises(StorageUnavailable, match="already exists"):
            accounts.repos.create(RepoId.parse("alice/model"))
        assert accounts.repos.find(RepoId.parse("alice/model")) is None
        assert list(elsewhere.iterdir()) == [] and not any(link.iterdir())
        link.unlink() if link.is_symlink() else link.rmdir()

    record = accounts.repos.create(RepoId.parse("alice/model"))
    assert (accounts.repos.path(record) / "HEAD").read_text() == "ref: refs/heads/main\n"
