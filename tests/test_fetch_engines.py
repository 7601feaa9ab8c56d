"""Both fetch engines with real git: partial and shallow clones, races, negotiation.

Each test runs on each engine's session server; those with real git also in protocol v2
and v0 (the dulwich engine answers v0 to both: git falls back by itself).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from _wire import FLUSH, UPLOAD_CAPS, PushTarget, advertised, pkt, post
from hubtest import Git, Hub, unique


@pytest.fixture(scope="module")
def hub(engine_hub: Hub) -> Hub:
    return engine_hub


@pytest.fixture
def git(tmp_path: Path, protocol: str) -> Git:
    return Git(tmp_path / "home", protocol)


def _history(hub: Hub, git: Git, tmp_path: Path) -> tuple[PushTarget, Path]:
    """A repository with three commits touching a file and a directory."""
    target = PushTarget.create(hub, git, tmp_path)
    work = tmp_path / "work"
    git.run("clone", "-q", target.url, str(work), token=target.token)
    for index in range(3):
        git.commit(work, {"data.txt": f"version {index}\n", f"dir/f{index}.txt": "x\n"})
    git.run("push", "-q", "origin", "main", cwd=work, token=target.token)
    return target, work


@pytest.mark.parametrize("spec", ["blob:none", "tree:0"])
def test_partial_clone_and_its_lazy_fetches(hub, git, tmp_path, spec):
    target, _ = _history(hub, git, tmp_path)
    clone = tmp_path / "partial"
    result = git.run("clone", f"--filter={spec}", target.url, str(clone), token=target.token)
    assert "checkout failed" not in result.stderr
    assert (clone / "data.txt").read_text() == "version 2\n"
    packs_after_clone = len(list((clone / ".git/objects/pack").glob("*.pack")))
    # Older blobs (and trees) come one lazy fetch at a time, each a want of an object
    # reachable from a tip but not a tip itself.
    shown = git.run("show", "HEAD~2:data.txt", cwd=clone, token=target.token).stdout
    assert shown == "version 0\n"
    git.run("checkout", "-q", "HEAD~1", cwd=clone, token=target.token)
    assert (clone / "dir" / "f1.txt").exists()
    lazy_packs = len(list((clone / ".git/objects/pack").glob("*.pack"))) - packs_after_clone
    if hub.engine == "git":  # it really was a partial clone, completed lazily
        assert git.run("config", "remote.origin.promisor", cwd=clone).stdout.strip() == "true"
        assert lazy_packs >= 2
    git.run("fsck", "--connectivity-only", cwd=clone, token=target.token)


def test_shallow_clone_and_deepen(hub, git, tmp_path):
    target, work = _history(hub, git, tmp_path)
    clone = tmp_path / "shallow"
    git.run("clone", "-q", "--depth", "1", target.url, str(clone), token=target.token)
    assert git.run("rev-list", "--count", "HEAD", cwd=clone).stdout.strip() == "1"
    git.run("fetch", "-q", "--depth", "3", cwd=clone, token=target.token)
    assert git.run("rev-list", "--count", "HEAD", cwd=clone).stdout.strip() == "3"
    git.run("fetch", "-q", "--unshallow", cwd=clone, token=target.token)
    assert (
        git.run("rev-parse", "HEAD", cwd=clone).stdout
        == git.run("rev-parse", "HEAD", cwd=work).stdout
    )


def test_want_of_a_tip_that_moved_since_the_advertisement(hub, git, tmp_path, protocol):
    """Another client pushed between this client's info/refs and its POST (in v2
    between ls-refs and fetch)."""
    target, work = _history(hub, git, tmp_path)
    seen = advertised(target.url, "git-upload-pack", target.token)["refs/heads/main"]
    git.commit(work, {"data.txt": "pushed meanwhile\n"})
    git.run("push", "-q", "origin", "main", cwd=work, token=target.token)
    assert target.refs()["refs/heads/main"] != seen
    if protocol == "v2" and hub.engine == "git":
        body = pkt("command=fetch\n") + b"0001" + pkt(f"want {seen}\n") + pkt("done\n") + FLUSH
        headers = {"Git-Protocol": "version=2"}
    else:
        body = pkt(f"want {seen} {UPLOAD_CAPS}\n") + FLUSH + pkt("done\n")
        headers = {}
    answer = post(target.url, "git-upload-pack", body, target.token, headers=headers)
    assert answer.status == 200
    assert b"ERR" not in answer.body[:64] and b"PACK" in answer.body


def test_fetch_with_many_local_commits_negotiates_to_the_end(hub, git, tmp_path):
    """Several stateless rounds of ``multi_ack_detailed``, one want never satisfied early.

    The clone holds 45 commits the server lacks; the server gained a commit on ``main``
    and a branch with no history in common, so negotiation finds common commits long
    before every want is covered.
    """
    target, work = _history(hub, git, tmp_path)
    clone = tmp_path / "busy"
    git.run("clone", "-q", target.url, str(clone), token=target.token)
    git.run("checkout", "-q", "-b", "local", cwd=clone)
    for index in range(45):
        git.commit(clone, {f"local{index}.txt": f"{index}\n"})
    for round_ in range(3):
        git.commit(work, {f"server{round_}.txt": "x\n"})
        git.run("push", "-q", "origin", "main", cwd=work, token=target.token)
        orphan = unique("orphan")
        git.run("checkout", "-q", "--orphan", orphan, cwd=work)
        git.commit(work, {f"{orphan}.txt": "o\n"})
        git.run("push", "-q", "origin", orphan, cwd=work, token=target.token)
        git.run("checkout", "-q", "main", cwd=work)
        result = git.run("fetch", "origin", cwd=clone, token=target.token, check=False)
        assert result.returncode == 0, result.stderr
        assert f"origin/{orphan}" in result.stderr


def test_dulwich_serves_a_tip_that_moves_after_the_want_check(tmp_path, monkeypatch):
    """A push lands between the fetch rules' check (the want was a tip) and the moment
    dulwich reads the refs (it no longer is): the want was allowed, so it is served.

    Found by ``bench/mixed_load.py``: dulwich answered "Client wants invalid object",
    which reached the client as a 400. The push is made to land exactly there.
    """
    from io import BytesIO

    from dulwich.repo import Repo

    from hfgit.config import Settings
    from hfgit.server.git import engines
    from hfgit.server.git.engines import UPLOAD_PACK, DulwichUploadPack, EngineContext, GitSession
    from hfgit.server.git.wants import FetchLimits

    git = Git(tmp_path / "home", "v0")  # git talks to the repository directly here
    path = tmp_path / "repo.git"
    git.run("init", "-q", "--bare", "-b", "main", str(path))
    work = tmp_path / "work"
    git.run("init", "-q", "-b", "main", str(work))
    git.run("remote", "add", "origin", str(path), cwd=work)
    wanted = git.commit(work, {"a.txt": "a\n"})
    git.run("push", "-q", "origin", "main", cwd=work)
    pushed = git.commit(work, {"a.txt": "b\n"})
    checked = engines.check_wants

    def check_then_push(repo, wants, binary):
        result = checked(repo, wants, binary)
        git.run("push", "-q", "origin", "main", cwd=work)
        return result

    monkeypatch.setattr(engines, "check_wants", check_then_push)
    settings = Settings.load(tmp_path / "data")
    context = EngineContext(FetchLimits.from_settings(settings), None, lambda *args: None)
    body = pkt(f"want {wanted} {UPLOAD_CAPS}\n") + FLUSH + pkt("done\n")
    out = bytearray()
    with Repo(str(path)) as repo:
        session = GitSession(UPLOAD_PACK, repo, None, None)
        DulwichUploadPack(context).serve(session, BytesIO(body).read, out.extend)
        assert repo.refs[b"refs/heads/main"] == pushed.encode()
    assert b"PACK" in out and b"ERR" not in out[:64]
