"""The default branch stays, ref names stay valid, and the limits hold."""

from __future__ import annotations

import os
from hashlib import sha1
from io import BytesIO

import pytest
from dulwich.pack import REF_DELTA, PackStreamReader

from _wire import ZERO, PushTarget, progress_text, report_status, snapshot
from hfgit.accounts import Accounts
from hfgit.config import Settings
from hubtest import Hub, start_server, stop_server


def test_default_branch_cannot_be_deleted(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    work = tmp_path / "work"
    git.run("clone", "-q", target.url, str(work), token=target.token)

    result = git.run("push", "origin", ":main", cwd=work, token=target.token, check=False)

    assert result.returncode != 0
    assert "deletion of the current branch prohibited" in result.stderr
    assert target.refs()["refs/heads/main"] == target.main


def test_other_branches_can_be_deleted(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    work = tmp_path / "work"
    git.run("clone", "-q", target.url, str(work), token=target.token)
    git.run("push", "-q", "origin", "main:topic", cwd=work, token=target.token)
    git.run("push", "-q", "origin", ":topic", cwd=work, token=target.token)
    assert "refs/heads/topic" not in target.refs()


@pytest.mark.parametrize("ref", ["HEAD", "refs/heads/a..b", "refs/heads/x.lock", "main"])
def test_invalid_ref_names_are_refused(hub, git, tmp_path, ref):
    target = PushTarget.create(hub, git, tmp_path)
    empty_pack = target.plumbing(git, tmp_path).pack([])
    before = snapshot(target.path)
    answer = target.push([(ZERO, target.main, ref)], empty_pack)
    assert report_status(answer.body)[ref] == "ng funny refname"
    assert snapshot(target.path) == before


def test_file_over_the_limit_is_refused_with_a_pointer_to_lfs(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    work = tmp_path / "work"
    git.run("clone", "-q", target.url, str(work), token=target.token)
    git.commit(work, {"weights/model.bin": os.urandom(10 * 1024 * 1024 + 1)})
    before = snapshot(target.path)

    result = git.run("push", "origin", "main", cwd=work, token=target.token, check=False)

    assert result.returncode != 0
    assert "git lfs track" in result.stderr
    assert "weights/model.bin" in result.stderr
    assert snapshot(target.path) == before


@pytest.fixture(scope="module")
def strict_hub(tmp_path_factory):
    """A server with small limits, to reach them cheaply."""
    data_dir = tmp_path_factory.mktemp("strict") / "data"
    env = {
        "HFGIT_MAX_REF_UPDATES": "3",
        "HFGIT_MAX_PACK_BYTES": str(64 * 1024),
        "HFGIT_MAX_BLOB_BYTES": "1000",
    }
    settings = Settings.load(data_dir)
    accounts = Accounts.open(settings)
    process, url = start_server(data_dir, env=env)
    try:
        yield Hub(url=url, data_dir=data_dir, accounts=accounts, process=process, env=env)
    finally:
        stop_server(process)
        accounts.store.dispose()


def test_too_many_ref_updates_are_refused(strict_hub, git, tmp_path):
    target = PushTarget.create(strict_hub, git, tmp_path)
    work = tmp_path / "work"
    git.run("clone", "-q", target.url, str(work), token=target.token)
    for index in range(4):
        git.run("branch", f"b{index}", cwd=work)
    before = snapshot(target.path)

    result = git.run(
        "push", "origin", "b0", "b1", "b2", "b3", cwd=work, token=target.token, check=False
    )

    assert result.returncode != 0
    assert "too many ref updates" in result.stderr
    assert snapshot(target.path) == before


def test_pack_over_the_limit_is_refused(strict_hub, git, tmp_path):
    target = PushTarget.create(strict_hub, git, tmp_path)
    work = tmp_path / "work"
    git.run("clone", "-q", target.url, str(work), token=target.token)
    git.commit(work, {f"f{i}.txt": os.urandom(900).hex()[:900] for i in range(150)})
    before = snapshot(target.path)

    result = git.run("push", "origin", "main", cwd=work, token=target.token, check=False)

    assert result.returncode != 0
    assert "limit" in result.stderr
    assert snapshot(target.path) == before


def test_blob_limit_is_configurable(strict_hub, git, tmp_path):
    target = PushTarget.create(strict_hub, git, tmp_path)
    work = tmp_path / "work"
    git.run("clone", "-q", target.url, str(work), token=target.token)
    git.commit(work, {"small.txt": "x" * 999})
    git.run("push", "-q", "origin", "main", cwd=work, token=target.token)
    git.commit(work, {"big.txt": os.urandom(1001)})
    result = git.run("push", "origin", "main", cwd=work, token=target.token, check=False)
    assert result.returncode != 0
    assert "big.txt" in result.stderr


def test_file_over_the_limit_stored_as_a_delta_is_refused(strict_hub, git, tmp_path):
    target = PushTarget.create(strict_hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    text = "".join(f"line {index} of a file that deltas well\n" for index in range(25)).encode()
    assert len(text) < 1000
    blob = scratch.blob(text)
    tree = scratch.tree([("100644", blob, "data.txt")])
    base = scratch.commit(tree, (target.main,))
    answer = target.push([(target.main, base, "refs/heads/main")], scratch.pack([base, tree, blob]))
    assert report_status(answer.body)["refs/heads/main"] == "ok"
    scratch.run("update-ref", "refs/heads/main", base)
    grown = scratch.tree([("100644", scratch.blob(text + text[:200]), "data.txt")])
    commit = scratch.commit(grown, (base,))
    # As git push sends it: the grown file is a small delta against the one on the server.
    pack = scratch.run(
        "pack-objects", "--thin", "--stdout", "--revs", input=f"{commit}\n^{base}\n".encode()
    )
    stored = {
        unpacked.pack_type_num
        for unpacked in PackStreamReader(sha1, BytesIO(pack).read).read_objects()
    }
    assert REF_DELTA in stored and len(pack) < 1000
    before = snapshot(target.path)

    answer = target.push([(base, commit, "refs/heads/main")], pack)

    assert report_status(answer.body)["refs/heads/main"].startswith("ng file too large")
    assert "data.txt" in progress_text(answer.body)
    assert snapshot(target.path) == before
