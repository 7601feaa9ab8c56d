"""A push or an LFS upload that runs out of disk space fails cleanly, changes nothing, and
the next one succeeds once there is room again.

The repositories directory and the LFS directory are small tmpfs mounts of the test's
own (the database stays outside, as an operator's usually is); a filler file takes the
space away and gives it back.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from _wire import PushTarget, report_status, snapshot
from hfgit.disk import free_bytes
from hubtest import IN_CI, Git, Hub, MakeHub, http_request, require_tool
from lfs_support import MEDIA, batch, blob, held, stored_path, upload

SIZE = "24m"


def mount_tmpfs(path: Path) -> None:
    require_tool("mount", "mount")
    path.mkdir(parents=True, exist_ok=True)
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={SIZE},mode=0700", "tmpfs", str(path)],
        capture_output=True,
        text=True,
    )
    if result.returncode != 0:
        message = f"cannot mount a tmpfs (needs root with CAP_SYS_ADMIN): {result.stderr}"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A data directory whose ``repos`` and ``lfs`` are tmpfs mounts of 24 MiB each."""
    data_dir = tmp_path / "data"
    mounts = [data_dir / "repos", data_dir / "lfs"]
    try:
        for mount in mounts:
            mount_tmpfs(mount)
        yield data_dir
    finally:
        for mount in mounts:
            subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def fill(directory: Path, leave: int) -> Path:
    """Take all but ``leave`` bytes of ``directory``'s filesystem."""
    filler = directory / "filler"
    with filler.open("wb") as out:
        out.truncate(0)
        remaining = free_bytes(directory) - leave
        while remaining > 0:
            chunk = min(remaining, 1024 * 1024)
            out.write(b"\0" * chunk)
            remaining -= chunk
    return filler


def test_push_out_of_space_changes_nothing(
    small_disk: Path, make_hub: MakeHub, git: Git, tmp_path: Path
) -> None:
    hub = make_hub(data_dir=small_disk, workers=1)
    user = hub.make_user()
    token = hub.make_token(user)
    rid = hub.make_repo(f"{user}/model")
    url = hub.repo_url(rid)
    work = git.init_worktree(tmp_path / "w", {"README.md": "seed\n"})
    git.run("push", "-q", url, "main", cwd=work, token=token)
    path = hub.accounts.repos.path(hub.accounts.repos.get(rid))
    git.commit(work, {"weights.bin": os.urandom(6 * 1024 * 1024)})
    before = snapshot(path)

    filler = fill(small_disk / "repos", leave=2 * 1024 * 1024)
    pushed = git.run("push", url, "main", cwd=work, token=token, check=False)
    assert pushed.returncode != 0
    assert "remote unpack failed: the server is out of disk space" in pushed.stderr
    assert "[remote rejected] main -> main (no space left on the server" in pushed.stderr
    filler.unlink()
    assert snapshot(path) == before, "no partial pack, no quarantine, no ref moved"

    git.run("push", "-q", url, "main", cwd=work, token=token)
    head = git.run("rev-parse", "main", cwd=work).stdout.strip()
    assert git.run("ls-remote", url, "main", token=token).stdout.split()[0] == head
    git.run("--git-dir", str(path), "fsck", "--strict")


def test_no_room_left_for_the_refs(
    small_disk: Path, make_hub: MakeHub, git: Git, tmp_path: Path
) -> None:
    """The pack fits, but under 1 MiB would be left to move the refs: refused before
    the pack is moved in, with the reason on the ref."""
    hub = make_hub(data_dir=small_disk, workers=1)
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    commit, objects = scratch.commit_files({"small.txt": b"small\n"}, (target.main,))
    before = snapshot(target.path)

    filler = fill(small_disk / "repos", leave=512 * 1024)
    answer = target.push([(target.main, commit, "refs/heads/main")], scratch.pack(objects))
    filler.unlink()
    status = report_status(answer.body)
    assert status["refs/heads/main"] == "ng no space left on the server; try again later"
    assert snapshot(target.path) == before
    assert target.refs()["refs/heads/main"] == target.main


def put(hub: Hub, href: str, data: bytes, headers: dict) -> tuple[int, dict]:
    status, _, body = http_request(
        "PUT",
        href,
        body=data,
        headers={**headers, "Content-Type": "application/octet-stream"},
    )
    return status, json.loads(body or b"{}")


def test_lfs_upload_out_of_space_is_507_and_stores_nothing(
    small_disk: Path, make_hub: MakeHub
) -> None:
    hub = make_hub(data_dir=small_disk, workers=1)
    user = hub.make_user()
    token = hub.make_token(user)
    rid = hub.make_repo(f"{user}/model")
    data, item = blob(4 * 1024 * 1024)

    filler = fill(small_disk / "lfs", leave=1024 * 1024)
    status, _, answer = batch(hub, rid, "upload", [item], token)
    assert status == 200
    action = answer["objects"][0]["actions"]["upload"]
    status, refused = put(hub, action["href"], data, action.get("header", {}))
    assert status == 507
    assert "out of disk space" in refused["message"]
    assert not held(hub, rid, item["oid"])
    assert not stored_path(hub, item["oid"]).exists()
    assert list((small_disk / "lfs" / "tmp").iterdir()) == []
    filler.unlink()

    upload(hub, rid, token, data, item)
    assert held(hub, rid, item["oid"])
    status, _, answer = batch(hub, rid, "download", [item], token)
    href = answer["objects"][0]["actions"]["download"]["href"]
    assert http_request("GET", href, headers={"Accept": MEDIA})[2] == data
