"""A fetch can only obtain objects reachable from the refs the server advertises.

On both engines, and in both protocol versions: C git's v2 would serve any object that
exists, so these test the fetch rules hfgit checks before git runs.
"""

from __future__ import annotations

import pytest

from _wire import FLUSH, UPLOAD_CAPS, PushTarget, pkt, post, read_pkts
from hubtest import Git

DELIM = b"0001"


@pytest.fixture(scope="module")
def hub(engine_hub):
    return engine_hub


@pytest.fixture
def git(tmp_path, protocol) -> Git:
    return Git(tmp_path / "home", protocol)


def _want(target, sha: str, protocol: str = "v0"):
    if protocol == "v2":
        body = pkt("command=fetch\n") + DELIM + pkt(f"want {sha}\n") + pkt("done\n") + FLUSH
        headers = {"Git-Protocol": "version=2"}
    else:
        body = pkt(f"want {sha} {UPLOAD_CAPS}\n") + FLUSH + pkt("done\n")
        headers = {}
    return post(target.url, "git-upload-pack", body, target.token, headers=headers)


def _is_not_our_ref(answer, sha: str, hub=None, protocol: str = "v0") -> bool:
    """Refused as git refuses it. The dulwich engine speaks no v2: a v2 request is
    refused there as a whole (as any request it cannot parse)."""
    packets = b"".join(p for p in read_pkts(answer.body) if p)
    if answer.status != 200 or b"PACK" in answer.body:
        return False
    if hub is not None and hub.engine == "dulwich" and protocol == "v2":
        return b"ERR upload-pack: " in packets
    return f"ERR upload-pack: not our ref {sha}".encode() in packets


def test_deleted_branch_objects_cannot_be_fetched_by_id(hub, git, tmp_path, protocol):
    target = PushTarget.create(hub, git, tmp_path)
    work = tmp_path / "work"
    git.run("clone", "-q", target.url, str(work), token=target.token)
    git.run("checkout", "-q", "-b", "secret", cwd=work)
    secret = git.commit(work, {"secret.txt": "leaked key\n"})
    git.run("push", "-q", "origin", "secret", cwd=work, token=target.token)
    git.run("push", "-q", "origin", ":secret", cwd=work, token=target.token)

    assert _is_not_our_ref(_want(target, secret), secret)
    assert _is_not_our_ref(_want(target, secret, protocol), secret, hub, protocol)
    fresh = tmp_path / "fresh"
    git.run("clone", "-q", target.url, str(fresh), token=target.token)
    result = git.run("fetch", "origin", secret, cwd=fresh, token=target.token, check=False)
    assert result.returncode != 0
    assert "unadvertised object" in result.stderr or "not our ref" in result.stderr


def test_tree_and_blob_of_a_deleted_branch_cannot_be_fetched(hub, git, tmp_path, protocol):
    target = PushTarget.create(hub, git, tmp_path)
    work = tmp_path / "work"
    git.run("clone", "-q", target.url, str(work), token=target.token)
    git.run("checkout", "-q", "-b", "secret", cwd=work)
    git.commit(work, {"secret/key.txt": "leaked key\n"})
    git.run("push", "-q", "origin", "secret", cwd=work, token=target.token)
    git.run("push", "-q", "origin", ":secret", cwd=work, token=target.token)
    tree = git.run("rev-parse", "HEAD^{tree}", cwd=work).stdout.strip()
    blob = git.run("rev-parse", "HEAD:secret/key.txt", cwd=work).stdout.strip()
    for sha in (tree, blob):
        assert _is_not_our_ref(_want(target, sha, protocol), sha, hub, protocol)


def test_force_pushed_away_commit_cannot_be_fetched(hub, git, tmp_path, protocol):
    target = PushTarget.create(hub, git, tmp_path)
    work = tmp_path / "work"
    git.run("clone", "-q", target.url, str(work), token=target.token)
    gone = git.commit(work, {"oops.txt": "should not have pushed\n"})
    git.run("push", "-q", "origin", "main", cwd=work, token=target.token)
    git.run("reset", "-q", "--hard", "HEAD^", cwd=work)
    git.run("push", "-q", "--force", "origin", "main", cwd=work, token=target.token)

    assert _is_not_our_ref(_want(target, gone), gone)
    assert _is_not_our_ref(_want(target, gone, protocol), gone, hub, protocol)


def test_another_repositorys_objects_cannot_be_fetched(hub, git, tmp_path, protocol):
    mine = PushTarget.create(hub, git, tmp_path / "mine")
    other = PushTarget.create(hub, git, tmp_path / "other")
    work = tmp_path / "work"
    git.run("clone", "-q", other.url, str(work), token=other.token)
    theirs = git.commit(work, {"theirs.txt": "only in the other repository\n"})
    git.run("push", "-q", "origin", "main", cwd=work, token=other.token)

    assert _is_not_our_ref(_want(mine, theirs), theirs)
    assert _is_not_our_ref(_want(mine, theirs, protocol), theirs, hub, protocol)


def test_tree_and_blob_reachable_from_a_tip_can_be_fetched(hub, git, tmp_path, protocol):
    """What a partial clone's lazy fetch asks for (``allowReachableSHA1InWant``)."""
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    tree = scratch.run("rev-parse", "main^{tree}").decode().strip()
    blob = scratch.run("rev-parse", "main:README.md").decode().strip()
    for sha in (tree, blob):
        answer = _want(target, sha, protocol if hub.engine == "git" else "v0")
        assert answer.status == 200
        assert b"PACK" in answer.body


def test_advertised_tip_can_be_fetched(hub, git, tmp_path, protocol):
    target = PushTarget.create(hub, git, tmp_path)
    answer = _want(target, target.main)
    assert answer.status == 200
    assert b"PACK" in answer.body
    answer = _want(target, target.main, protocol if hub.engine == "git" else "v0")
    assert answer.status == 200
    assert b"PACK" in answer.body
