"""The POST endpoints decide again: skipping or outliving info/refs grants nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from _wire import FLUSH, UPLOAD_CAPS, PushTarget, pkt, post, push_body, snapshot
from hubtest import Git, Hub


@pytest.fixture(scope="module")
def hub(engine_hub: Hub) -> Hub:
    return engine_hub


def new_commit(target: PushTarget, git: Git, tmp_path: Path) -> tuple[str, bytes]:
    scratch = target.plumbing(git, tmp_path)
    commit, objects = scratch.commit_files({"new.txt": b"new\n"}, (target.main,))
    return commit, scratch.pack(objects)


def test_read_token_cannot_push_by_posting_directly(hub: Hub, git: Git, tmp_path: Path):
    target = PushTarget.create(hub, git, tmp_path)
    commit, pack = new_commit(target, git, tmp_path)
    reader = hub.make_token(target.rid.namespace, "read")
    before = snapshot(target.path)
    body = push_body([(target.main, commit, "refs/heads/main")], pack)
    answer = post(target.url, "git-receive-pack", body, reader)
    assert answer.status == 403
    assert b"read role" in answer.body
    assert snapshot(target.path) == before


def test_token_deleted_after_info_refs_is_refused_on_post(hub: Hub, git: Git, tmp_path: Path):
    target = PushTarget.create(hub, git, tmp_path)
    commit, pack = new_commit(target, git, tmp_path)
    name = "short-lived"
    token = hub.make_token(target.rid.namespace, "write", name=name)
    assert target.refs()["refs/heads/main"] == target.main
    hub.accounts.tokens.delete(target.rid.namespace, name)
    before = snapshot(target.path)
    body = push_body([(target.main, commit, "refs/heads/main")], pack)
    answer = post(target.url, "git-receive-pack", body, token)
    assert answer.status == 401
    assert answer.headers["WWW-Authenticate"] == 'Basic realm="hfgit"'
    assert snapshot(target.path) == before


def test_upload_pack_post_on_a_hidden_repo_answers_like_a_missing_one(
    hub: Hub, git: Git, tmp_path: Path
):
    target = PushTarget.create(hub, git, tmp_path)
    hub.accounts.repos.update(target.rid, private=True)
    stranger = hub.make_token(hub.make_user(), "write")
    wants = pkt(f"want {target.main} {UPLOAD_CAPS}\n") + FLUSH + pkt("done\n")
    hidden = post(target.url, "git-upload-pack", wants, stranger)
    missing = post(target.url + "-nope", "git-upload-pack", wants, stranger)
    assert hidden.status == missing.status == 404
    assert hidden.body == missing.body
    owner = post(target.url, "git-upload-pack", wants, target.token)
    assert owner.status == 200 and b"PACK" in owner.body
