"""A ``*.lock`` left by a crashed writer does not break every later push."""

from __future__ import annotations

import os
import time

from _wire import PushTarget


def _clone(git, target, tmp_path):
    work = tmp_path / "work"
    git.run("clone", "-q", target.url, str(work), token=target.token)
    return work


def test_stale_ref_lock_is_recovered(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    lock = target.path / "refs" / "heads" / "main.lock"
    lock.write_text("crashed writer\n")
    an_hour_ago = time.time() - 3600
    os.utime(lock, (an_hour_ago, an_hour_ago))
    work = _clone(git, target, tmp_path)
    tip = git.commit(work, {"a.txt": "after crash\n"})

    git.run("push", "-q", "origin", "main", cwd=work, token=target.token)

    assert target.refs()["refs/heads/main"] == tip
    assert not lock.exists()


def test_stale_packed_refs_lock_is_recovered(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    lock = target.path / "packed-refs.lock"
    lock.write_text("")
    an_hour_ago = time.time() - 3600
    os.utime(lock, (an_hour_ago, an_hour_ago))
    work = _clone(git, target, tmp_path)
    git.run("push", "-q", "origin", "main:topic", cwd=work, token=target.token)
    git.run("push", "-q", "origin", ":topic", cwd=work, token=target.token)
    assert "refs/heads/topic" not in target.refs()


def test_fresh_lock_gets_a_retryable_refusal_not_a_500(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    lock = target.path / "refs" / "heads" / "main.lock"
    lock.write_text("someone else, right now\n")
    work = _clone(git, target, tmp_path)
    tip = git.commit(work, {"a.txt": "blocked\n"})

    result = git.run("push", "origin", "main", cwd=work, token=target.token, check=False)

    assert result.returncode != 0
    assert "try again" in result.stderr
    assert "HTTP 500" not in result.stderr
    assert target.refs()["refs/heads/main"] == target.main
    assert lock.exists()

    lock.unlink()
    git.run("push", "-q", "origin", "main", cwd=work, token=target.token)
    assert target.refs()["refs/heads/main"] == tip
