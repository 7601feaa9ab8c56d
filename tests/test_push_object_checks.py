"""Objects are checked like ``git fsck`` would before anything lands."""

from __future__ import annotations

import pytest

from _wire import PushTarget, report_status, snapshot


@pytest.mark.parametrize("name", [".git", ".GIT", "git~1", ".git.", "..", "."])
def test_tree_with_a_forbidden_entry_name_is_refused(hub, git, tmp_path, name):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    blob = scratch.blob(b"[core]\n\thooksPath = /tmp\n")
    inner = scratch.tree([("100644", blob, "config")])
    tree = scratch.tree([("040000", inner, name)])
    commit = scratch.commit(tree, (target.main,))
    before = snapshot(target.path)

    answer = target.push(
        [(target.main, commit, "refs/heads/main")], scratch.pack([commit, tree, inner, blob])
    )

    status = report_status(answer.body)
    assert status["unpack"].startswith("bad object")
    assert status["refs/heads/main"] == "ng unpacker error"
    assert snapshot(target.path) == before


def test_tree_entry_with_a_slash_is_refused(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    blob = scratch.blob(b"x\n")
    tree = scratch.tree([("100644", blob, "a/b")])
    commit = scratch.commit(tree, (target.main,))
    before = snapshot(target.path)

    answer = target.push(
        [(target.main, commit, "refs/heads/main")], scratch.pack([commit, tree, blob])
    )

    assert report_status(answer.body)["unpack"].startswith("bad object")
    assert snapshot(target.path) == before


def test_malformed_commit_is_refused(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    bogus = scratch.literal("commit", b"tree not-a-sha\nauthor nobody\n\nmessage\n")
    before = snapshot(target.path)

    answer = target.push([(target.main, bogus, "refs/heads/main")], scratch.pack([bogus]))

    status = report_status(answer.body)
    assert status["unpack"] != "ok"
    assert status["refs/heads/main"] == "ng unpacker error"
    assert snapshot(target.path) == before
    assert target.refs()["refs/heads/main"] == target.main


@pytest.mark.parametrize(
    "gitmodules",
    [
        b'[submodule "x"]\n\tpath = x\n\turl = --upload-pack=touch /tmp/pwned\n',
        b'[submodule "x"]\n\tpath = -x\n\turl = https://example.com/x\n',
        b'[submodule "../../hooks"]\n\tpath = y\n\turl = https://example.com/y\n',
    ],
)
def test_gitmodules_with_option_like_values_is_refused(hub, git, tmp_path, gitmodules):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    blob = scratch.blob(gitmodules)
    tree = scratch.tree([("100644", blob, ".gitmodules")])
    commit = scratch.commit(tree, (target.main,))
    before = snapshot(target.path)

    answer = target.push(
        [(target.main, commit, "refs/heads/main")], scratch.pack([commit, tree, blob])
    )

    assert ".gitmodules" in report_status(answer.body)["unpack"]
    assert snapshot(target.path) == before


def test_ordinary_gitmodules_is_accepted(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    blob = scratch.blob(b'[submodule "lib"]\n\tpath = lib\n\turl = https://example.com/lib\n')
    tree = scratch.tree([("100644", blob, ".gitmodules")])
    commit = scratch.commit(tree, (target.main,))

    answer = target.push(
        [(target.main, commit, "refs/heads/main")], scratch.pack([commit, tree, blob])
    )

    assert report_status(answer.body) == {"unpack": "ok", "refs/heads/main": "ok"}


def test_branch_cannot_point_at_a_blob(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    blob = scratch.blob(b"just a blob\n")

    answer = target.push([(target.main, blob, "refs/heads/main")], scratch.pack([blob]))

    assert report_status(answer.body)["refs/heads/main"].startswith("ng cannot point a branch")
    assert target.refs()["refs/heads/main"] == target.main
