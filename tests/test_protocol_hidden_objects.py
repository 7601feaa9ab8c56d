"""A fetch can only obtain objects reachable from the refs the server advertises."""

from __future__ import annotations

from _wire import FLUSH, UPLOAD_CAPS, PushTarget, pkt, post, read_pkts


def _want(target, sha: str):
    body = pkt(f"want {sha} {UPLOAD_CAPS}\n") + FLUSH + pkt("done\n")
    return post(target.url, "git-upload-pack", body, target.token)


def _is_not_our_ref(answer, sha: str) -> bool:
    return answer.status == 200 and f"ERR upload-pack: not our ref {sha}".encode() in b"".join(
        p for p in read_pkts(answer.body) if p
    )


def test_deleted_branch_objects_cannot_be_fetched_by_id(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    work = tmp_path / "work"
    git.run("clone", "-q", target.url, str(work), token=target.token)
    git.run("checkout", "-q", "-b", "secret", cwd=work)
    secret = git.commit(work, {"secret.txt": "leaked key\n"})
    git.run("push", "-q", "origin", "secret", cwd=work, token=target.token)
    git.run("push", "-q", "origin", ":secret", cwd=work, token=target.token)

    assert _is_not_our_ref(_want(target, secret), secret)
    fresh = tmp_path / "fresh"
    git.run("clone", "-q", target.url, str(fresh), token=target.token)
    result = git.run("fetch", "origin", secret, cwd=fresh, token=target.token, check=False)
    assert result.returncode != 0
    assert "unadvertised object" in result.stderr or "not our ref" in result.stderr


def test_force_pushed_away_commit_cannot_be_fetched(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    work = tmp_path / "work"
    git.run("clone", "-q", target.url, str(work), token=target.token)
    gone = git.commit(work, {"oops.txt": "should not have pushed\n"})
    git.run("push", "-q", "origin", "main", cwd=work, token=target.token)
    git.run("reset", "-q", "--hard", "HEAD^", cwd=work)
    git.run("push", "-q", "--force", "origin", "main", cwd=work, token=target.token)

    assert _is_not_our_ref(_want(target, gone), gone)


def test_another_repositorys_objects_cannot_be_fetched(hub, git, tmp_path):
    mine = PushTarget.create(hub, git, tmp_path / "mine")
    other = PushTarget.create(hub, git, tmp_path / "other")
    work = tmp_path / "work"
    git.run("clone", "-q", other.url, str(work), token=other.token)
    theirs = git.commit(work, {"theirs.txt": "only in the other repository\n"})
    git.run("push", "-q", "origin", "main", cwd=work, token=other.token)

    assert _is_not_our_ref(_want(mine, theirs), theirs)


def test_non_tip_tree_and_blob_cannot_be_fetched(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    tree = scratch.run("rev-parse", "main^{tree}").decode().strip()
    assert _is_not_our_ref(_want(target, tree), tree)


def test_advertised_tip_can_be_fetched(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    answer = _want(target, target.main)
    assert answer.status == 200
    assert b"PACK" in answer.body
