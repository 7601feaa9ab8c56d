"""Repository maintenance: pushes pile up packs, a repack folds them, nothing is lost.

Real git on both sides: pushes and fetches through ``hfgit serve``, ``git fsck`` on the
repository afterwards, and ``hfgit repo maintain`` as an administrator runs it.
"""

from __future__ import annotations

import fcntl
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

from _wire import PushTarget
from hfgit.accounts import Accounts
from hfgit.config import Settings
from hfgit.names import RepoId
from hfgit.server.git.maintenance import MaintenancePolicy, count, maintain
from hubtest import unique


def _fsck(git, path: Path) -> None:
    git.run("--git-dir", str(path), "fsck", "--strict", "--no-progress", "--no-dangling")


def _push_many(git, target: PushTarget, work: Path, pushes: int) -> str:
    tip = ""
    for index in range(pushes):
        tip = git.commit(work, {f"f{index % 7}.txt": f"push {index}\n"}, message=f"c{index}")
        git.run("push", "-q", "origin", "main", cwd=work, token=target.token)
    return tip


def _clone(git, target: PushTarget, path: Path) -> Path:
    git.run("clone", "-q", target.url, str(path), token=target.token)
    return path


def test_many_pushes_get_repacked_in_the_background(engine_hub, git, tmp_path):
    """Also: the repack writes a bitmap (git's clones use it), and both engines serve
    the repacked repository, dulwich's without reading the bitmap."""
    target = PushTarget.create(engine_hub, git, tmp_path)
    work = _clone(git, target, tmp_path / "work")

    tip = _push_many(git, target, work, 24)  # the server repacks past 20 packs

    deadline = time.monotonic() + 60
    while count(target.path).packs > 5 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert count(target.path).packs <= 5
    assert list((target.path / "objects" / "pack").glob("*.bitmap"))
    assert target.refs()["refs/heads/main"] == tip
    _fsck(git, target.path)
    copy = _clone(git, target, tmp_path / "copy")
    assert git.run("rev-parse", "HEAD", cwd=copy).stdout.strip() == tip
    git.run("fetch", "-q", "origin", cwd=work, token=target.token)


def test_pushes_and_fetches_during_maintenance_all_succeed(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    work = _clone(git, target, tmp_path / "work")
    reader = _clone(git, target, tmp_path / "reader")
    _push_many(git, target, work, 10)
    stop = threading.Event()
    runs: list[str] = []

    def repack_again_and_again() -> None:
        while not stop.is_set():
            runs.append(maintain(target.path, MaintenancePolicy(), force=True).state)

    thread = threading.Thread(target=repack_again_and_again)
    thread.start()
    try:
        tip = ""
        for index in range(12):
            tip = git.commit(work, {"during.txt": f"{index}\n"}, message=f"d{index}")
            git.run("push", "-q", "origin", "main", cwd=work, token=target.token)
            git.run("pull", "-q", "--ff-only", "origin", "main", cwd=reader, token=target.token)
            git.run(
                "clone", "-q", "--bare", target.url, str(tmp_path / unique("c")), token=target.token
            )
    finally:
        stop.set()
        thread.join()

    assert "repacked" in runs
    assert git.run("rev-parse", "HEAD", cwd=reader).stdout.strip() == tip
    assert target.refs()["refs/heads/main"] == tip
    _fsck(git, target.path)


def test_unreachable_objects_and_quarantines_survive(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    work = _clone(git, target, tmp_path / "work")
    dropped = git.commit(work, {"gone.txt": "force-pushed away\n"}, message="gone")
    git.run("push", "-q", "origin", "main", cwd=work, token=target.token)
    git.run("reset", "-q", "--hard", "HEAD~1", cwd=work)
    git.commit(work, {"kept.txt": "new\n"}, message="kept")
    git.run("push", "-q", "--force", "origin", "main", cwd=work, token=target.token)
    quarantine = target.path / "objects" / "incoming-inflight"
    quarantine.mkdir()
    (quarantine / "tmp_pack_x").write_bytes(b"a push still arriving")

    for prune in (False, True):  # pruning keeps what is younger than two weeks
        report = maintain(target.path, MaintenancePolicy(prune=prune), force=True)
        assert report.state == "repacked"
        git.run("--git-dir", str(target.path), "cat-file", "-e", dropped)

    assert (quarantine / "tmp_pack_x").read_bytes() == b"a push still arriving"
    assert count(target.path).loose == 0
    _fsck(git, target.path)


def _cli(data_dir: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "hfgit.cli", "repo", "maintain", *args, "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_maintain_command_one_all_busy_and_missing(git, tmp_path):
    data_dir = tmp_path / "data"
    accounts = Accounts.open(Settings.load(data_dir))
    try:
        accounts.users.create_user("alice")
        paths = {}
        for name, private in (("open", False), ("hidden", True), ("lost", False)):
            record = accounts.repos.create(RepoId.parse(f"alice/{name}"), private=private)
            paths[name] = accounts.repos.path(record)
    finally:
        accounts.store.dispose()
    work = git.init_worktree(tmp_path / "work")
    for index in range(3):
        git.commit(work, {"a.txt": f"{index}\n"})
        for name in ("open", "hidden"):
            git.run("push", "-q", str(paths[name]), "main", cwd=work)
    loose = count(paths["open"]).loose
    assert loose > 0

    not_due = _cli(data_dir, "alice/open")
    assert not_due.returncode == 0, not_due.stderr
    assert "not due" in not_due.stderr
    one = _cli(data_dir, "alice/open", "--force")
    assert one.returncode == 0, one.stderr
    assert f"model alice/open: repacked: 0 packs, {loose} loose objects -> 1 packs, 0" in one.stderr
    _fsck(git, paths["open"])

    os.rename(paths["lost"], paths["lost"].with_suffix(".moved"))
    fd = os.open(paths["hidden"] / "objects", os.O_RDONLY | os.O_DIRECTORY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        every = _cli(data_dir, "--all", "--force")
    finally:
        os.close(fd)
    assert every.returncode == 1  # one repository's storage is missing
    assert "model alice/hidden: busy" in every.stderr
    assert "model alice/lost: storage missing" in every.stderr
    assert "model alice/open: repacked" in every.stderr

    again = _cli(data_dir, "--all", "--force", "--prune")
    assert "model alice/hidden: repacked" in again.stderr
    _fsck(git, paths["hidden"])

    assert _cli(data_dir).returncode != 0
    assert "Name one repository" in _cli(data_dir).stderr
