"""A ref can only move to an object whose whole history the repository holds."""

from __future__ import annotations

from _wire import ZERO, PushTarget, report_status, snapshot


def test_commit_without_its_tree_is_refused(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    blob = scratch.blob(b"new file\n")
    tree = scratch.tree([("100644", blob, "new.txt")])
    commit = scratch.commit(tree, (target.main,))
    before = snapshot(target.path)

    answer = target.push([(target.main, commit, "refs/heads/main")], scratch.pack([commit]))

    assert answer.status == 200
    status = report_status(answer.body)
    assert status["unpack"] == "ok"
    assert status["refs/heads/main"] == "ng missing necessary objects"
    assert snapshot(target.path) == before
    assert target.refs()["refs/heads/main"] == target.main
    git.run("clone", "-q", target.url, str(tmp_path / "clone"), token=target.token)


def test_ref_to_an_object_nobody_sent_is_refused(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    ghost = scratch.commit(scratch.tree([]), (target.main,), message="never sent")
    before = snapshot(target.path)

    answer = target.push([(ZERO, ghost, "refs/heads/ghost")], scratch.pack([]))

    assert report_status(answer.body)["refs/heads/ghost"] == "ng missing necessary objects"
    assert snapshot(target.path) == before
    assert "refs/heads/ghost" not in target.refs()


def test_commit_with_a_missing_parent_is_refused(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    orphan_parent = scratch.commit(scratch.tree([]), message="parent never sent")
    blob = scratch.blob(b"x\n")
    tree = scratch.tree([("100644", blob, "x.txt")])
    child = scratch.commit(tree, (target.main, orphan_parent))
    before = snapshot(target.path)

    answer = target.push(
        [(target.main, child, "refs/heads/main")], scratch.pack([child, tree, blob])
    )

    assert report_status(answer.body)["refs/heads/main"] == "ng missing necessary objects"
    assert snapshot(target.path) == before


def test_complete_crafted_push_lands_and_passes_fsck(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    blob = scratch.blob(b"complete\n")
    tree = scratch.tree([("100644", blob, "file.txt")])
    commit = scratch.commit(tree, (target.main,))

    answer = target.push(
        [(target.main, commit, "refs/heads/main")], scratch.pack([commit, tree, blob])
    )

    assert report_status(answer.body) == {"unpack": "ok", "refs/heads/main": "ok"}
    assert target.refs()["refs/heads/main"] == commit
    git.run("--git-dir", str(target.path), "fsck", "--strict")
    assert not [p for p in (target.path / "objects").iterdir() if p.name.startswith("incoming-")]
