"""SIGTERM while a big clone and a big push are in flight.

The push is under way (its body is being spooled by the server) before the clone starts.
Whatever the grace period, a clone that exits 0 is complete and ``git fsck``-clean, a
failed one leaves no directory behind; a push either lands whole (its tip and all it
needs are in the repository) or leaves the branch where it was. The server exits once
its grace period is over (the wait has a margin as a hang guard, it times nothing).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from _wire import PushTarget
from hubtest import Git, MakeHub, unique

FILES = 120  # of 1 MiB each, random: a 120 MiB pack, more objects than git unpacks loose
MARGIN = 20  # under the 30 s gunicorn would give by default
HANG_GUARD = 600


def _helper_config(token: str) -> tuple[list[str], dict[str, str]]:
    helper = (
        '!f() { test "$1" = get && echo "username=u" && echo "password=$HFGIT_TEST_TOKEN"; }; f'
    )
    return ["-c", "credential.helper=", "-c", f"credential.helper={helper}"], {
        "HFGIT_TEST_TOKEN": token
    }


def _start_git(git: Git, token: str, *args: str, cwd: Path | None = None) -> subprocess.Popen:
    config, env = _helper_config(token)
    return subprocess.Popen(
        ["git", *config, *args],
        cwd=cwd,
        env={**git.env, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _mid_transfer(clone: Path, process: subprocess.Popen) -> None:
    """Return once the clone has received 20 MiB of its pack (or has ended)."""
    packs = clone / ".git" / "objects" / "pack"
    while process.poll() is None:
        if any(p.stat().st_size > 20 * 2**20 for p in packs.glob("tmp_pack_*")):
            return
        time.sleep(0.02)


def _uploading(hub, process: subprocess.Popen) -> None:
    """Return once a worker spools a request body to disk (the push's), or the push ended."""
    spool = str(hub.data_dir / "spool")
    while process.poll() is None:
        for worker in Path(f"/proc/{hub.process.pid}/task").glob("*/children"):
            for pid in worker.read_text().split():
                for fd in Path(f"/proc/{pid}/fd").glob("*"):
                    with contextlib.suppress(OSError):
                        if os.readlink(fd).startswith(spool):
                            return
        time.sleep(0.02)


def _branch(git: Git, repo: Path) -> str:
    return git.run("--git-dir", str(repo), "rev-parse", "refs/heads/main").stdout.strip()


@pytest.mark.parametrize("grace", [1, 300])
def test_sigterm_lets_transfers_finish_or_fail_cleanly(
    make_hub: MakeHub, git: Git, tmp_path: Path, grace: int
):
    hub = make_hub(env={"HFGIT_SHUTDOWN_GRACE": str(grace)})
    big = PushTarget.create(hub, git, tmp_path)
    work = tmp_path / "big"
    git.run("clone", "-q", big.url, str(work), token=big.token)
    git.commit(work, {f"f{n}.bin": os.urandom(2**20) for n in range(FILES)})
    git.run("push", "-q", "origin", "main", cwd=work, token=big.token)

    target = PushTarget.create(hub, git, tmp_path)
    pushed = tmp_path / "pushed"
    git.run("clone", "-q", target.url, str(pushed), token=target.token)
    new_tip = git.commit(pushed, {f"g{n}.bin": os.urandom(2**20) for n in range(FILES)})

    # No delta search or compression (the data is random): the upload starts at once.
    push = _start_git(
        git,
        target.token,
        *("-c", "pack.window=0", "-c", "core.compression=0"),
        *("push", "-q", "origin", "main"),
        cwd=pushed,
    )
    _uploading(hub, push)
    clone = tmp_path / unique("clone")
    cloning = _start_git(git, big.token, "clone", "-q", big.url, str(clone))
    _mid_transfer(clone, cloning)
    hub.process.send_signal(signal.SIGTERM)

    hub.process.wait(timeout=grace + MARGIN)
    clone_rc = cloning.wait(timeout=HANG_GUARD)
    push_rc = push.wait(timeout=HANG_GUARD)

    if clone_rc == 0:
        git.run("fsck", "--strict", "--no-dangling", cwd=clone)
        assert (clone / f"f{FILES - 1}.bin").stat().st_size == 2**20
        assert git.run("status", "--porcelain", cwd=clone).stdout == ""
    else:
        assert not clone.exists(), cloning.stderr.read()

    landed = _branch(git, target.path)
    if push_rc == 0:
        assert landed == new_tip
    else:
        assert landed in (target.main, new_tip)
    if landed == new_tip:
        git.run("--git-dir", str(target.path), "fsck", "--strict", "--no-dangling")
    if grace == 300:
        # A grace period longer than the transfers: both finish.
        assert (clone_rc, push_rc) == (0, 0)
