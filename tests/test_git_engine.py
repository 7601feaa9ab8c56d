"""The git engine's subprocess: what git may read, run and leave behind.

A server started with a poisoned environment (a ``~/.gitconfig``, ``GIT_CONFIG_*`` and
``GIT_DIR`` that would run commands or point elsewhere) serves repositories whose own
config is poisoned too; nothing of it may run. Clients that go away mid-clone leave no
``git`` or ``pack-objects`` behind, and pack generations are capped per host.
"""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from _wire import FLUSH, UPLOAD_CAPS, PushTarget, advertised, pkt, post
from hfgit.config import Settings
from hfgit.server.git.reach import check_wants
from hfgit.server.git.slots import PackSlots
from hfgit.server.git.wants import FetchRefused
from hubtest import Git, Hub, http_request, running_hub


@pytest.fixture(scope="module")
def poisoned(tmp_path_factory) -> tuple[Hub, Path]:
    """``hfgit serve`` (engine auto) in an environment that would make git run commands,
    with one slot for pack generation. Returns the hub and the marker directory."""
    root = tmp_path_factory.mktemp("poisoned")
    markers = root / "markers"
    markers.mkdir()
    home = root / "home"
    home.mkdir()
    (home / ".gitconfig").write_text(
        f"[uploadpack]\n\tpackObjectsHook = touch {markers}/global-hook &&\n"
        f"[core]\n\tfsmonitor = touch {markers}/global-fsmonitor\n"
    )
    env = {
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home),
        "GIT_CONFIG_PARAMETERS": f"'uploadpack.packobjectshook=touch {markers}/param-hook &&'",
        "GIT_CONFIG_COUNT": "1",
        "GIT_CONFIG_KEY_0": "uploadpack.packObjectsHook",
        "GIT_CONFIG_VALUE_0": f"touch {markers}/count-hook &&",
        "GIT_DIR": str(root / "elsewhere.git"),
        "GIT_EXEC_PATH": str(root / "no-such-exec-path"),
        "HFGIT_MAX_PACK_PROCESSES": "1",
    }
    with running_hub(root / "data", env=env) as hub:
        yield hub, markers


def test_auto_picks_git_and_says_so(poisoned):
    hub, _ = poisoned
    log = next(hub.data_dir.parent.glob("serve-*.log")).read_text()
    assert "git engine: git (" in log and "chosen by auto" in log


def test_nothing_planted_in_config_or_environment_runs(poisoned, tmp_path):
    hub, markers = poisoned
    git = Git(tmp_path / "home")
    target = PushTarget.create(hub, git, tmp_path)
    hooks = target.path / "planted-hooks"
    hooks.mkdir()
    for name in ("pre-upload-pack", "post-upload-pack", "reference-transaction"):
        hook = hooks / name
        hook.write_text(f"#!/bin/sh\ntouch {markers}/{name}\n")
        hook.chmod(0o755)
    with (target.path / "config").open("a") as config:
        config.write(
            f"[uploadpack]\n\tpackObjectsHook = touch {markers}/repo-hook &&\n"
            f"[core]\n\thooksPath = {hooks}\n\tfsmonitor = touch {markers}/repo-fsmonitor\n"
            f"\talternateRefsCommand = touch {markers}/alternate-refs\n"
        )
    for protocol in ("v2", "v0"):
        client = Git(tmp_path / f"home-{protocol}", protocol)
        clone = tmp_path / f"clone-{protocol}"
        client.run("clone", "-q", target.url, str(clone), token=target.token)
        assert (clone / "README.md").read_text() == "seed\n"
        client.run("clone", "-q", "--filter=blob:none", target.url, str(clone) + "-partial")
    assert sorted(os.listdir(markers)) == []
    assert not list((hub.data_dir / "git-home").iterdir())


def _git_processes(data_dir: Path) -> list[str]:
    """git processes working on anything under ``data_dir``, whoever their parent is now."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if "git" in command.split(" ", 1)[0] and (
            str(data_dir) in command or cwd.startswith(str(data_dir))
        ):
            found.append(f"{entry.name}: {command}")
    return found


def _abandoned_clone(target: PushTarget) -> socket.socket:
    """A clone's POST whose answer is left unread: git blocks writing the pack."""
    parts = urlsplit(target.url)
    body = pkt(f"want {target.main} {UPLOAD_CAPS}\n") + FLUSH + pkt("done\n")
    import base64

    auth = base64.b64encode(f"u:{target.token}".encode()).decode()
    sock = socket.create_connection((parts.hostname, parts.port), timeout=30)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.sendall(
        (
            f"POST {parts.path}/git-upload-pack HTTP/1.1\r\nHost: {parts.netloc}\r\n"
            f"Authorization: Basic {auth}\r\n"
            "Content-Type: application/x-git-upload-pack-request\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode()
        + body
    )
    sock.recv(1024)
    return sock


def _big_target(hub: Hub, git: Git, tmp_path: Path) -> PushTarget:
    """A repository whose pack (24 MB, incompressible) outgrows every socket buffer."""
    target = PushTarget.create(hub, git, tmp_path)
    work = tmp_path / "work"
    git.run("clone", "-q", target.url, str(work), token=target.token)
    git.commit(work, {f"big{index}.bin": os.urandom(8 * 1024 * 1024) for index in range(3)})
    git.run("push", "-q", "origin", "main", cwd=work, token=target.token)
    target.main = git.run("rev-parse", "HEAD", cwd=work).stdout.strip()
    return target


def _no_git_left(data_dir: Path, seconds: float = 10) -> list[str]:
    deadline = time.monotonic() + seconds
    while _git_processes(data_dir) and time.monotonic() < deadline:
        time.sleep(0.1)
    return _git_processes(data_dir)


def test_a_client_that_goes_away_mid_clone_leaves_no_git_behind(hub, git, tmp_path):
    target = _big_target(hub, git, tmp_path)
    sockets = [_abandoned_clone(target) for _ in range(2)]
    time.sleep(0.5)
    assert _git_processes(hub.data_dir), "the clones should be under way"
    for sock in sockets:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\1\0\0\0\0\0\0\0")
        sock.close()  # a reset: the server's next write fails
    assert _no_git_left(hub.data_dir) == []
    assert post(target.url, "git-upload-pack", FLUSH, target.token).status == 200


def _workers_rss(server_pid: int) -> int:
    """Resident bytes of the server's worker processes (git children not included)."""
    total = 0
    for entry in Path("/proc").iterdir():
        status = _read(entry / "status") if entry.name.isdigit() else ""
        if f"PPid:\t{server_pid}\n" in status:
            kib = next(line for line in status.splitlines() if line.startswith("VmRSS:"))
            total += int(kib.split()[1]) * 1024
    return total


def test_the_relay_holds_chunks_not_packs(hub, git, tmp_path):
    """A 24 MB clone moves the workers' memory by far less than the pack's size (the
    dulwich engine: by about 60 MB)."""
    target = _big_target(hub, git, tmp_path)
    git.run("clone", "-q", "--bare", target.url, str(tmp_path / "warm"), token=target.token)
    before = _workers_rss(hub.process.pid)
    peak = before
    done = threading.Event()

    def sample() -> None:
        nonlocal peak
        while not done.is_set():
            peak = max(peak, _workers_rss(hub.process.pid))
            time.sleep(0.01)

    sampler = threading.Thread(target=sample)
    sampler.start()
    try:
        git.run("clone", "-q", "--bare", target.url, str(tmp_path / "c"), token=target.token)
    finally:
        done.set()
        sampler.join()
    assert peak - before < 8 * 1024 * 1024, (before, peak)


@pytest.mark.parametrize("signal_name", ["SIGABRT", "SIGKILL"])
def test_a_worker_that_dies_mid_clone_leaves_no_git_behind(tmp_path, signal_name):
    """SIGABRT is gunicorn's worker timeout (the worker_abort hook kills the groups);
    after SIGKILL git finds its output pipe closed and ends."""
    data_dir = tmp_path / "data"
    with running_hub(data_dir, workers=1, extra_args=["--engine", "git"]) as hub:
        process = hub.process
        target = _big_target(hub, Git(tmp_path / "home"), tmp_path)
        sock = _abandoned_clone(target)
        time.sleep(0.5)
        assert _git_processes(data_dir), "the clone should be under way"
        workers = [
            int(entry.name)
            for entry in Path("/proc").iterdir()
            if entry.name.isdigit() and f"PPid:\t{process.pid}\n" in _read(entry / "status")
        ]
        assert len(workers) == 1
        os.kill(workers[0], getattr(signal, signal_name))
        assert _no_git_left(data_dir) == []
        sock.close()


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def test_pack_generations_wait_for_a_slot(poisoned, tmp_path):
    """With one slot, parallel clones queue and all succeed."""
    hub, _ = poisoned
    git = Git(tmp_path / "home")
    target = PushTarget.create(hub, git, tmp_path)

    def clone(index: int) -> int:
        return git.run(
            "clone", "-q", target.url, str(tmp_path / f"c{index}"), token=target.token, check=False
        ).returncode

    with ThreadPoolExecutor(4) as pool:
        assert list(pool.map(clone, range(4))) == [0, 0, 0, 0]


def test_slots_are_shared_and_released(tmp_path):
    slots = PackSlots(tmp_path / "slots", 1)
    other = PackSlots(tmp_path / "slots", 1)  # another worker process's view
    with slots.hold(), pytest.raises(FetchRefused, match="busy"), other.hold(wait=0.2):
        pass
    with other.hold(wait=0.2):
        pass


def test_reachability_without_a_git_binary(hub, git, tmp_path):
    """The dulwich walk that hosts without git use: same answers as git's."""
    from dulwich.repo import Repo

    target = PushTarget.create(hub, git, tmp_path)
    work = tmp_path / "work"
    git.run("clone", "-q", target.url, str(work), token=target.token)
    old = target.main
    blob = git.run("rev-parse", "HEAD:README.md", cwd=work).stdout.strip()
    git.commit(work, {"dir/new.txt": "new\n"})
    git.run("push", "-q", "origin", "main", cwd=work, token=target.token)
    git.run("checkout", "-q", "-b", "gone", cwd=work)
    gone = git.commit(work, {"gone.txt": "gone\n"})
    git.run("push", "-q", "origin", "gone", cwd=work, token=target.token)
    git.run("push", "-q", "origin", ":gone", cwd=work, token=target.token)
    repo = Repo(str(target.path))
    try:
        check_wants(repo, [old.encode(), blob.encode()], None)
        tip = advertised(target.url, "git-upload-pack", target.token)["refs/heads/main"]
        check_wants(repo, [tip.encode()], None)
        with pytest.raises(FetchRefused, match="not our ref"):
            check_wants(repo, [gone.encode()], None)
    finally:
        repo.close()


def test_without_git_on_path_auto_is_dulwich_and_fetches_still_work(tmp_path):
    data_dir = tmp_path / "data"
    empty = tmp_path / "no-git"
    empty.mkdir()
    with running_hub(data_dir, workers=1, env={"PATH": str(empty)}) as hub:
        log = next(tmp_path.glob("serve-*.log")).read_text()
        assert "git engine: dulwich, chosen by auto" in log
        git = Git(tmp_path / "home")
        target = PushTarget.create(hub, git, tmp_path)
        work = tmp_path / "work"
        git.run("clone", "-q", target.url, str(work), token=target.token)
        git.commit(work, {"more.txt": "more\n"})
        git.run("push", "-q", "origin", "main", cwd=work, token=target.token)
        body = pkt(f"want {target.main} {UPLOAD_CAPS}\n") + FLUSH + pkt("done\n")
        answer = post(target.url, "git-upload-pack", body, target.token)
        assert answer.status == 200 and b"PACK" in answer.body


@pytest.mark.parametrize(
    "broken",
    [
        pytest.param(b"\n[core]\n\tbare = notabool\n", id="git-cannot-read"),  # dulwich can
        pytest.param(b"\n[core\n", id="dulwich-cannot-read"),
    ],
)
def test_storage_that_cannot_be_read_is_a_503_not_a_crash(hub, git, tmp_path, broken):
    target = PushTarget.create(hub, git, tmp_path)
    config = target.path / "config"
    saved = config.read_bytes()
    config.write_bytes(saved + broken)
    try:
        answer = git.run("ls-remote", target.url, token=target.token, check=False)
        assert answer.returncode != 0
        assert "storage is unavailable" in answer.stderr
    finally:
        config.write_bytes(saved)
    git.run("ls-remote", target.url, token=target.token)


def test_engine_git_without_git_on_path_refuses_to_start(tmp_path):
    empty = tmp_path / "no-git"
    empty.mkdir()
    with (
        pytest.raises(RuntimeError, match="--engine git: no git binary on PATH"),
        running_hub(tmp_path / "data", env={"PATH": str(empty)}, extra_args=["--engine", "git"]),
    ):
        pass


@pytest.mark.parametrize(
    ("name", "value"), [("HFGIT_GIT_ENGINE", "cgit"), ("HFGIT_MAX_PACK_PROCESSES", "0")]
)
def test_bad_engine_settings_are_refused(monkeypatch, tmp_path, name, value):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=name):
        Settings.load(tmp_path)


def test_v2_capabilities_are_what_git_itself_advertises(hub, git, tmp_path):
    """The git engine keeps protocol v2's first answer (capabilities, no refs) once git
    has given it; every answer after that is still the one git gives this repository."""
    import subprocess

    from hfgit.server.git.cgit import GitUploadPack
    from hfgit.server.git.gitproc import GitBinary

    target = PushTarget.create(hub, git, tmp_path)
    binary = GitBinary.find(tmp_path)
    assert binary is not None
    argv = binary.argv(GitUploadPack(binary, None, None, 1).config, "upload-pack")
    own = subprocess.run(
        [*argv, "--stateless-rpc", "--advertise-refs", str(target.path)],
        capture_output=True,
        env=binary.environment(protocol_v2=True),
        cwd=tmp_path,
        check=True,
    ).stdout
    assert b"version 2" in own and b"ls-refs" in own
    url = f"{target.url}/info/refs?service=git-upload-pack"
    for _ in range(3):
        status, _, body = http_request(
            "GET", url, token=target.token, headers={"Git-Protocol": "version=2"}
        )
        assert status == 200
        assert body == pkt("# service=git-upload-pack\n") + FLUSH + own
