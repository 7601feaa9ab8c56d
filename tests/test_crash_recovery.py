"""What killed pushes leave behind is swept at the next start and periodically, and a live
push is never touched by a sweep (it holds its quarantine with ``flock``)."""

from __future__ import annotations

import hashlib
import http.client
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

from _wire import PushTarget, push_body, report_status, snapshot
from hfgit.accounts import Accounts
from hfgit.config import Settings
from hfgit.names import RepoId
from hfgit.server.git.sweep import recover_at_start
from hubtest import Git, Hub, MakeHub, basic_auth

#: These tests kill pushes whose body is half sent, so their quarantine exists mid-body:
#: that is gunicorn's threaded worker, where the application reads the body as it comes
#: (hfgit's front reads it whole first, so a stalled push never reaches the application).
GRACE = {"HFGIT_SWEEP_GRACE_SECONDS": "1", "HFGIT_WORKER": "gthread"}


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.05)
    raise AssertionError(f"never happened: {what}")


def quarantines(path: Path) -> list[Path]:
    return sorted((path / "objects").glob("incoming-*"))


def traces(path: Path) -> list[str]:
    """Every leftover of a push anywhere in the repository."""
    found = []
    for _root, dirs, files in os.walk(path):
        found += [name for name in dirs + files if name.startswith(("incoming-", "tmp_pack_"))]
    return found


class StalledPush:
    """A receive-pack POST that has sent half its pack and waits: a push in flight."""

    def __init__(self, target: PushTarget, git: Git, tmp_path: Path) -> None:
        scratch = target.plumbing(git, tmp_path)
        files = {"big.bin": os.urandom(3 * 1024 * 1024)}
        self.commit, objects = scratch.commit_files(files, (target.main,))
        body = push_body([(target.main, self.commit, "refs/heads/main")], scratch.pack(objects))
        parts = urlsplit(target.url)
        self.connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
        self.connection.putrequest("POST", f"{parts.path}/git-receive-pack")
        self.connection.putheader("Authorization", basic_auth(target.token))
        self.connection.putheader("Content-Type", "application/x-git-receive-pack-request")
        self.connection.putheader("Content-Length", str(len(body)))
        self.connection.endheaders()
        self.connection.send(body[: len(body) // 2])
        self.rest = body[len(body) // 2 :]
        wait_until(
            lambda: any(q.glob("tmp_pack_*") for q in quarantines(target.path)),
            "the push's quarantine holds a partial pack",
        )

    def finish(self) -> bytes:
        self.connection.send(self.rest)
        answer = self.connection.getresponse()
        assert answer.status == 200
        body = answer.read()
        self.connection.close()
        return body


def workers_of(hub: Hub) -> list[int]:
    assert hub.process is not None
    pids = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            if f"PPid:\t{hub.process.pid}\n" in status.read_text():
                pids.append(int(status.parent.name))
        except OSError:
            continue
    return pids


def kill_server(hub: Hub) -> None:
    """SIGKILL: workers first, then the master; no handler of hfgit's runs."""
    assert hub.process is not None
    for pid in workers_of(hub):
        os.kill(pid, signal.SIGKILL)
    hub.process.kill()
    hub.process.wait()


def plant_old(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    old = time.time() - 3600
    os.utime(path, (old, old))
    return path


def test_sigkilled_push_leaves_no_trace_after_the_next_start(
    make_hub: MakeHub, git: Git, tmp_path: Path
) -> None:
    data_dir = tmp_path / "data"
    hub = make_hub(data_dir=data_dir, env=GRACE, workers=1)
    target = PushTarget.create(hub, git, tmp_path)
    before = snapshot(target.path)
    push = StalledPush(target, git, tmp_path)  # held: its socket stays open
    kill_server(hub)
    push.connection.close()
    assert quarantines(target.path), "the killed push left its quarantine"

    # What other crashes leave: a repack's temporary pack, a ref lock, an LFS upload,
    # and an LFS object a killed gc had set aside (its only copy).
    leftovers = [
        plant_old(target.path / "objects" / "pack" / "tmp_pack_crashed"),
        plant_old(target.path / "refs" / "heads" / "main.lock"),
        plant_old(data_dir / "lfs" / "tmp" / "0123456789abcdef-upload"),
    ]
    content = b"an lfs object\n"
    oid = hashlib.sha256(content).hexdigest()
    stored = data_dir / "lfs" / "objects" / oid[:2] / oid[2:4] / oid
    plant_old(stored.with_name(oid + ".gc"), content)
    time.sleep(1.5)  # past the grace period

    again = make_hub(data_dir=data_dir, env=GRACE, workers=1)
    assert traces(target.path) == []
    assert snapshot(target.path) == before
    assert not any(path.exists() for path in leftovers)
    assert stored.read_bytes() == content and not stored.with_name(oid + ".gc").exists()
    assert again.log is not None and "Recovered after a crash: 1 push quarantines" in (
        again.log.read_text()
    )

    work = git.init_worktree(tmp_path / "after", {"README.md": "after the crash\n"})
    git.run(
        "push", "-q", "--force", again.repo_url(target.rid), "main", cwd=work, token=target.token
    )
    git.run("--git-dir", str(target.path), "fsck", "--strict")


def test_a_killed_worker_is_swept_periodically(make_hub: MakeHub, git: Git, tmp_path: Path) -> None:
    hub = make_hub(env={**GRACE, "HFGIT_SWEEP_INTERVAL": "1"}, workers=1)
    target = PushTarget.create(hub, git, tmp_path)
    before = snapshot(target.path)
    push = StalledPush(target, git, tmp_path)  # held: its socket stays open
    for pid in workers_of(hub):
        os.kill(pid, signal.SIGKILL)
    push.connection.close()
    wait_until(lambda: not quarantines(target.path), "the respawned worker sweeps")
    assert snapshot(target.path) == before


def test_a_live_push_survives_sweeps(make_hub: MakeHub, git: Git, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    hub = make_hub(data_dir=data_dir, env={**GRACE, "HFGIT_SWEEP_INTERVAL": "1"}, workers=1)
    target = PushTarget.create(hub, git, tmp_path)
    push = StalledPush(target, git, tmp_path)
    time.sleep(2.5)  # past the grace period; the worker's own sweep has run meanwhile
    # A second gatekeeper on the same data starts, and sweeps, while the push is live.
    second = make_hub(data_dir=data_dir, env=GRACE, workers=1)
    assert second.log is not None and "Recovered after a crash" not in second.log.read_text()
    assert quarantines(target.path)

    status = report_status(push.finish())
    assert status["unpack"] == "ok" and status["refs/heads/main"] == "ok"
    assert target.refs()["refs/heads/main"] == push.commit
    assert traces(target.path) == []
    git.run("--git-dir", str(target.path), "fsck", "--strict")


def test_the_sweep_follows_no_link(accounts: Accounts, data_dir: Path, tmp_path: Path) -> None:
    """Links where leftovers would be are left alone, and so is what they point at."""
    accounts.users.create_user("alice")
    record = accounts.repos.create(RepoId.parse("alice/model"))
    outside = tmp_path / "outside"
    (outside / "incoming-old").mkdir(parents=True)
    keep = plant_old(outside / "incoming-old" / "tmp_pack_keep")
    objects = accounts.repos.path(record) / "objects"
    (objects / "incoming-link").symlink_to(outside / "incoming-old")
    (accounts.repos_dir / f"{'f' * 32}.git").symlink_to(outside)
    for path in (objects / "incoming-link", outside / "incoming-old", outside):
        os.utime(path, (time.time() - 3600,) * 2, follow_symlinks=False)

    recover_at_start(Settings.load(data_dir))
    assert keep.exists()
    assert (objects / "incoming-link").is_symlink()
