"""Git LFS file locking: the real ``git lfs lock/locks/unlock`` and raw requests."""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from urllib.parse import urlencode

import pytest
import sqlalchemy as sa

from hfgit.policy import Action
from hfgit.server.gate import Gate
from hfgit.store import lfs_locks
from hubtest import Git, Hub, http_request, unique
from lfs_support import MEDIA, lfs_worktree

HEADERS = {"Accept": MEDIA, "Content-Type": MEDIA}
LOCKING_NOTE = "does not support the Git LFS locking API"


def locks_url(hub: Hub, repo, suffix: str = "") -> str:
    return f"{hub.repo_url(repo)}.git/info/lfs/locks{suffix}"


def post(url: str, payload: object, token: str | None = None) -> tuple[int, dict, dict]:
    body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    status, headers, answer = http_request("POST", url, token=token, body=body, headers=HEADERS)
    return status, headers, json.loads(answer)


def get(url: str, token: str | None = None, **query: object) -> tuple[int, dict, dict]:
    if query:
        url = f"{url}?{urlencode(query)}"
    status, headers, answer = http_request("GET", url, token=token, headers=HEADERS)
    return status, headers, json.loads(answer)


def stored_paths(hub: Hub, repo) -> list[str]:
    record = hub.accounts.repos.get(repo)
    with hub.accounts.store.begin() as conn:
        rows = conn.execute(
            sa.select(lfs_locks.c.path)
            .where(lfs_locks.c.repo_id == record.id)
            .order_by(lfs_locks.c.id)
        )
        return [row.path for row in rows]


def team(hub: Hub) -> tuple[str, str, str, object]:
    """An org repo with an admin and a write member."""
    admin, writer = hub.make_user(), hub.make_user()
    org = hub.make_org(members={admin: "admin", writer: "write"})
    repo = hub.make_repo(f"{org}/{unique('m')}", creator=admin)
    return org, admin, writer, repo


# With the real git-lfs


def pushed_worktree(hub: Hub, git: Git, path: Path, repo, token: str) -> Path:
    """A work tree with one LFS file, pushed, with ``origin`` set up as git-lfs needs it."""
    work, _ = lfs_worktree(git, path, os.urandom(50_000))
    git.run("remote", "add", "origin", hub.repo_url(repo), cwd=work)
    git.run("push", "-q", "-u", "origin", "main", cwd=work, token=token)
    return work


def test_lock_list_unlock_with_git_lfs(hub: Hub, lfs_git: Git, tmp_path: Path):
    user = hub.make_user()
    repo = hub.make_repo(f"{user}/{unique('m')}", private=True)
    token = hub.make_token(user, "write")
    work = pushed_worktree(hub, lfs_git, tmp_path / "work", repo, token)

    result = lfs_git.run("lfs", "lock", "model.safetensors", cwd=work, token=token)
    assert "Locked model.safetensors" in result.stdout
    assert stored_paths(hub, repo) == ["model.safetensors"]

    listed = lfs_git.run("lfs", "locks", "--json", cwd=work, token=token).stdout
    [lock] = json.loads(listed)
    assert lock["path"] == "model.safetensors"
    assert lock["owner"]["name"] == user
    assert lock["locked_at"].endswith("Z") or lock["locked_at"].endswith("+00:00")

    again = lfs_git.run("lfs", "lock", "model.safetensors", cwd=work, token=token, check=False)
    assert again.returncode != 0
    assert "already locked" in again.stderr
    assert stored_paths(hub, repo) == ["model.safetensors"]

    result = lfs_git.run("lfs", "unlock", "model.safetensors", cwd=work, token=token)
    assert "Unlocked model.safetensors" in result.stdout
    assert stored_paths(hub, repo) == []
    assert json.loads(lfs_git.run("lfs", "locks", "--json", cwd=work, token=token).stdout) == []


def test_push_no_longer_notes_missing_locking_api(hub: Hub, lfs_git: Git, tmp_path: Path):
    user = hub.make_user()
    repo = hub.make_repo(f"{user}/{unique('m')}")
    work, _ = lfs_worktree(lfs_git, tmp_path / "work", os.urandom(20_000))
    result = lfs_git.run("push", hub.repo_url(repo), "main", cwd=work, token=hub.make_token(user))
    # git-lfs prints its notes on stdout, git's progress goes to stderr: check both.
    output = result.stdout + result.stderr
    assert LOCKING_NOTE not in output
    # git-lfs saw a working verify endpoint (its note when lfs.<url>.locksverify is unset).
    assert "Locking support detected" in output


def test_push_touching_a_file_locked_by_someone_else(hub: Hub, lfs_git: Git, tmp_path: Path):
    _, admin, writer, repo = team(hub)
    admin_token, writer_token = hub.make_token(admin), hub.make_token(writer)
    pushed_worktree(hub, lfs_git, tmp_path / "admin", repo, admin_token)
    clone = tmp_path / "writer"
    lfs_git.run("clone", "-q", hub.repo_url(repo), str(clone), token=writer_token)
    lfs_git.run("lfs", "lock", "model.safetensors", cwd=clone, token=admin_token)
    lfs_git.commit(clone, {"model.safetensors": os.urandom(50_000)}, "new weights")
    head = lfs_git.run("rev-parse", "HEAD", cwd=clone).stdout.strip()

    # With lfs.<url>.locksverify true, git-lfs refuses to push a file locked by another.
    url = f"{hub.repo_url(repo)}.git/info/lfs"
    strict = lfs_git.run(
        "-c", f"lfs.{url}.locksverify=true", "push", "origin", "main",
        cwd=clone, token=writer_token, check=False,
    )  # fmt: skip
    assert strict.returncode != 0
    refusal = strict.stdout + strict.stderr
    assert "Cannot update locked files" in refusal
    assert f"* model.safetensors - {admin}" in refusal
    remote = lfs_git.run("ls-remote", hub.repo_url(repo), "main", token=writer_token).stdout
    assert head not in remote

    # Unset (git-lfs's default), it only warns and pushes.
    lenient = lfs_git.run("push", "origin", "main", cwd=clone, token=writer_token)
    assert "would have halted this push" in lenient.stdout + lenient.stderr
    remote = lfs_git.run("ls-remote", hub.repo_url(repo), "main", token=writer_token).stdout
    assert head in remote

    # The lock holder pushes freely: their own locks are "ours".
    lfs_git.run("lfs", "unlock", "model.safetensors", "--force", cwd=clone, token=admin_token)


def test_unlocking_someone_elses_lock(hub: Hub, lfs_git: Git, tmp_path: Path):
    _, admin, writer, repo = team(hub)
    other = hub.make_user()
    hub.accounts.users.set_member(repo.namespace, other, "write")
    admin_token, writer_token = hub.make_token(admin), hub.make_token(writer)
    work = pushed_worktree(hub, lfs_git, tmp_path / "work", repo, admin_token)
    lfs_git.run("lfs", "lock", "model.safetensors", cwd=work, token=writer_token)

    # Without --force nobody else may unlock it.
    result = lfs_git.run(
        "lfs", "unlock", "model.safetensors", cwd=work, token=admin_token, check=False
    )
    assert result.returncode != 0
    assert f"locked by {writer}" in result.stderr  # the server's refusal, shown by git-lfs
    assert stored_paths(hub, repo) == ["model.safetensors"]

    # With --force, whoever may manage the repository may.
    other_token = hub.make_token(other)
    may_manage = Gate(hub.accounts).check(
        hub.accounts.lookups.authenticate(other_token), repo, Action.MANAGE
    )
    forced = lfs_git.run(
        "lfs", "unlock", "--force", "model.safetensors", cwd=work, token=other_token, check=False
    )
    assert (forced.returncode == 0) == bool(may_manage.decision)
    if forced.returncode == 0:
        lfs_git.run("lfs", "lock", "model.safetensors", cwd=work, token=writer_token)
    assert stored_paths(hub, repo) == ["model.safetensors"]

    forced = lfs_git.run(
        "lfs", "unlock", "--force", "model.safetensors", cwd=work, token=admin_token
    )
    assert "Unlocked model.safetensors" in forced.stdout
    assert stored_paths(hub, repo) == []
    events = [e for e in hub.accounts.audit.events(20) if e.event == "lfs.unlock.force"]
    assert events and events[0].detail == {"path": "model.safetensors", "owner": writer}


# Raw requests: permissions


def test_permission_matrix(hub: Hub):
    owner, stranger = hub.make_user(), hub.make_user()
    public = hub.make_repo(f"{owner}/{unique('m')}")
    private = hub.make_repo(f"{owner}/{unique('m')}", private=True)
    write, read = hub.make_token(owner, "write"), hub.make_token(owner, "read")
    status, _, created = post(locks_url(hub, public), {"path": "a.bin"}, write)
    assert status == 201
    lock_id = created["lock"]["id"]

    # A read token lists but cannot lock, verify or unlock.
    assert get(locks_url(hub, public), read)[0] == 200
    for suffix, payload in (
        ("", {"path": "b.bin"}),
        ("/verify", {}),
        (f"/{lock_id}/unlock", {"force": True}),
    ):
        status, _, answer = post(locks_url(hub, public, suffix), payload, read)
        assert status == 403, suffix
        assert "read role" in answer["message"]
    assert stored_paths(hub, public) == ["a.bin"]

    # Anonymous: may list a public repo's locks, everything else asks for credentials.
    status, _, answer = get(locks_url(hub, public))
    assert status == 200 and [lock["path"] for lock in answer["locks"]] == ["a.bin"]
    for url, payload in (
        (locks_url(hub, public), {"path": "c.bin"}),
        (locks_url(hub, public, "/verify"), {}),
        (locks_url(hub, private, ""), None),
    ):
        if payload is None:
            status, headers, answer = get(url)
        else:
            status, headers, answer = post(url, payload)
        assert status == 401, url
        assert headers["WWW-Authenticate"].startswith("Basic ")
        assert "user access token" in answer["message"]
    status, headers, _ = get(locks_url(hub, public), "not-a-token")
    assert status == 401 and "WWW-Authenticate" in headers

    # A hidden repository answers exactly like a missing one.
    token = hub.make_token(stranger, "write")
    missing = locks_url(hub, f"{owner}/{unique('nothing')}")
    for suffix, payload in (("", {"path": "x.bin"}), ("/verify", {})):
        hidden = post(locks_url(hub, private, suffix), payload, token)
        assert hidden[0] == 404
        assert (hidden[0], hidden[2]) == (post(missing + suffix, payload, token)[::2])
    assert get(locks_url(hub, private), token)[::2] == get(missing, token)[::2]

    # A stranger can read the public repo's locks but not take or remove one.
    assert post(locks_url(hub, public), {"path": "d.bin"}, token)[0] == 403
    status, _, answer = post(locks_url(hub, public, f"/{lock_id}/unlock"), {"force": True}, token)
    assert status == 403
    assert stored_paths(hub, public) == ["a.bin"]


def test_unlock_needs_force_and_manage_right(hub: Hub):
    _, admin, writer, repo = team(hub)
    admin_token, writer_token = hub.make_token(admin), hub.make_token(writer)
    status, _, answer = post(locks_url(hub, repo), {"path": "w.bin"}, writer_token)
    lock_id = answer["lock"]["id"]

    status, _, answer = post(locks_url(hub, repo, f"/{lock_id}/unlock"), {}, admin_token)
    assert status == 403
    assert f"locked by {writer}" in answer["message"]
    assert stored_paths(hub, repo) == ["w.bin"]

    status, _, answer = post(
        locks_url(hub, repo, f"/{lock_id}/unlock"), {"force": True}, admin_token
    )
    assert status == 200
    assert answer["lock"] == {**answer["lock"], "id": lock_id, "path": "w.bin"}
    assert answer["lock"]["owner"] == {"name": writer}
    assert stored_paths(hub, repo) == []

    # Locks belong to their repository: an id from another repo is not found here.
    other = hub.make_repo(f"{admin}/{unique('m')}")
    status, _, answer = post(locks_url(hub, other), {"path": "o.bin"}, admin_token)
    other_id = answer["lock"]["id"]
    status, _, _ = post(locks_url(hub, repo, f"/{other_id}/unlock"), {"force": True}, admin_token)
    assert status == 404
    assert stored_paths(hub, other) == ["o.bin"]


# Raw requests: the protocol


def test_verify_splits_ours_and_theirs_and_pages(hub: Hub):
    _, admin, writer, repo = team(hub)
    admin_token, writer_token = hub.make_token(admin), hub.make_token(writer)
    for index in range(5):
        token = admin_token if index % 2 == 0 else writer_token
        status, _, _ = post(locks_url(hub, repo), {"path": f"dir/f{index}.bin"}, token)
        assert status == 201

    ours, theirs, cursor, pages = [], [], None, 0
    while pages < 10:
        payload = {"limit": 2, "ref": {"name": "refs/heads/main"}}
        if cursor:
            payload["cursor"] = cursor
        status, _, answer = post(locks_url(hub, repo, "/verify"), payload, writer_token)
        assert status == 200
        assert len(answer["ours"]) + len(answer["theirs"]) <= 2
        ours += [lock["path"] for lock in answer["ours"]]
        theirs += [lock["path"] for lock in answer["theirs"]]
        pages += 1
        cursor = answer.get("next_cursor")
        if cursor is None:
            break
    assert pages == 3
    assert ours == ["dir/f1.bin", "dir/f3.bin"]
    assert theirs == ["dir/f0.bin", "dir/f2.bin", "dir/f4.bin"]

    listed, cursor = [], None
    for _ in range(10):
        query = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        status, _, answer = get(locks_url(hub, repo), admin_token, **query)
        listed += [lock["path"] for lock in answer["locks"]]
        cursor = answer.get("next_cursor")
        if cursor is None:
            break
    assert listed == stored_paths(hub, repo)

    status, _, answer = get(locks_url(hub, repo), admin_token, path="dir/f3.bin")
    [lock] = answer["locks"]
    assert lock["owner"] == {"name": writer}
    status, _, answer = get(locks_url(hub, repo), admin_token, id=lock["id"], refspec="")
    assert [found["path"] for found in answer["locks"]] == ["dir/f3.bin"]
    status, _, answer = get(locks_url(hub, repo), admin_token, path="nothing.bin")
    assert (status, answer) == (200, {"locks": []})


def test_second_lock_on_a_path_conflicts(hub: Hub):
    _, admin, writer, repo = team(hub)
    status, _, first = post(
        locks_url(hub, repo),
        {"path": "model.safetensors", "ref": {"name": "refs/heads/main"}},
        hub.make_token(admin),
    )
    assert status == 201
    # Locks are repository-wide: another branch does not get a second lock.
    status, _, answer = post(
        locks_url(hub, repo),
        {"path": "model.safetensors", "ref": {"name": "refs/heads/other"}},
        hub.make_token(writer),
    )
    assert status == 409
    assert answer["lock"] == first["lock"]
    assert f"already locked by {admin}" in answer["message"]


def test_concurrent_creates_one_wins(hub: Hub):
    org, _, _, repo = team(hub)
    users = [hub.make_user() for _ in range(6)]
    for user in users:
        hub.accounts.users.set_member(org, user, "write")
    tokens = [hub.make_token(user) for user in users]
    barrier = threading.Barrier(len(tokens))
    results: list[tuple[int, dict]] = []

    def attempt(token: str) -> None:
        barrier.wait(timeout=30)
        status, _, answer = post(locks_url(hub, repo), {"path": "race.bin"}, token)
        results.append((status, answer))

    threads = [threading.Thread(target=attempt, args=(token,)) for token in tokens]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    statuses = sorted(status for status, _ in results)
    assert statuses == [201] + [409] * (len(tokens) - 1)
    [winner] = [answer["lock"] for status, answer in results if status == 201]
    assert all(answer["lock"] == winner for status, answer in results if status == 409)
    assert stored_paths(hub, repo) == ["race.bin"]


@pytest.mark.parametrize(
    "payload",
    [
        {},
        {"path": ""},
        {"path": 7},
        {"path": "/abs.bin"},
        {"path": "dir/"},
        {"path": "a//b.bin"},
        {"path": "./a.bin"},
        {"path": "a/../../etc/passwd"},
        {"path": "nul\x00.bin"},
        {"path": "line\nbreak.bin"},
        {"path": "del\x7f.bin"},
        {"path": "x" * 1025},
        {"path": "é" * 513},  # 1026 bytes in UTF-8
        {"path": "\ud800.bin"},  # a lone surrogate: not text
        {"path": "ok.bin", "ref": "refs/heads/main"},
        {"path": "ok.bin", "ref": {"name": ""}},
        {"path": "ok.bin", "ref": {"name": "refs/heads/a\x00b"}},
    ],
)
def test_invalid_lock_requests_store_nothing(hub: Hub, payload: dict):
    user = hub.make_user()
    repo = hub.make_repo(f"{user}/{unique('m')}")
    status, headers, answer = post(locks_url(hub, repo), payload, hub.make_token(user))
    assert status == 422
    assert headers["Content-Type"].startswith(MEDIA)
    assert answer["message"]
    assert stored_paths(hub, repo) == []


def test_invalid_bodies_and_paging_values(hub: Hub):
    user = hub.make_user()
    repo = hub.make_repo(f"{user}/{unique('m')}")
    token = hub.make_token(user)
    status, _, answer = post(locks_url(hub, repo), b"{not json", token)
    assert status == 400 and "not valid JSON" in answer["message"]
    status, _, answer = post(locks_url(hub, repo), b"[]", token)
    assert status == 400 and "JSON object" in answer["message"]
    assert post(locks_url(hub, repo), {"path": "x" * 1024}, token)[0] == 201  # the limit itself

    status, _, created = post(locks_url(hub, repo), {"path": "kept.bin"}, token)
    lock_id = created["lock"]["id"]
    for payload in ({"limit": 0}, {"limit": -1}, {"limit": "many"}, {"limit": True}):
        assert post(locks_url(hub, repo, "/verify"), payload, token)[0] == 422, payload
    for payload in ({"cursor": "abc"}, {"cursor": "-1"}, {"cursor": "9" * 40}):
        assert post(locks_url(hub, repo, "/verify"), payload, token)[0] == 422, payload
    for query in ({"limit": "0"}, {"limit": "x"}, {"cursor": "1e3"}, {"id": "abc"}):
        status, _, answer = get(locks_url(hub, repo), token, **query)
        assert status == 422, query
        assert answer["message"].startswith("Invalid")
    status, _, answer = get(locks_url(hub, repo), token, path="../x")
    assert status == 422
    # More than the server's maximum gets the maximum, not an error.
    status, _, answer = get(locks_url(hub, repo), token, limit="100000")
    assert status == 200 and len(answer["locks"]) == 2

    status, _, answer = post(locks_url(hub, repo, f"/{lock_id}/unlock"), {"force": "yes"}, token)
    assert status == 422 and "force" in answer["message"]
    assert post(locks_url(hub, repo, "/abc/unlock"), {}, token)[0] == 422
    assert post(locks_url(hub, repo, "/999999999/unlock"), {}, token)[0] == 404
    assert len(stored_paths(hub, repo)) == 2

    status, _, _ = http_request("DELETE", locks_url(hub, repo), token=token)
    assert status == 405
    status, _, _ = http_request("GET", locks_url(hub, repo, "/verify"), token=token)
    assert status == 405


def test_locks_go_with_their_repository(hub: Hub):
    user = hub.make_user()
    repo = hub.make_repo(f"{user}/{unique('m')}")
    token = hub.make_token(user)
    assert post(locks_url(hub, repo), {"path": "gone.bin"}, token)[0] == 201
    record = hub.accounts.repos.get(repo)
    hub.accounts.repos.delete(repo)
    hub.make_repo(repo.repo_id)  # the same name again is a new repository
    with hub.accounts.store.begin() as conn:
        left = conn.execute(sa.select(lfs_locks).where(lfs_locks.c.repo_id == record.id)).all()
    assert left == []
    status, _, answer = get(locks_url(hub, repo), token)
    assert (status, answer) == (200, {"locks": []})
