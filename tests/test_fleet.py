"""Many gatekeepers: two ``hfgit serve`` on one PostgreSQL and one data directory, LFS on S3.

Set up as an operator would (docs/deployment.md): a new database upgraded with
``hfgit db upgrade`` before either gatekeeper serves it, the bare repositories in one
shared directory, LFS objects in an S3 bucket (moto's server).
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from hubtest import Git, Hub, MakeHub, run_cli, unique
from lfs_support import AWS_ENV, BUCKET, lfs_worktree


@dataclass
class Fleet:
    first: Hub
    second: Hub

    def url(self, index: int, repo: str) -> str:
        """``repo`` on the first gatekeeper for even ``index``, the second for odd."""
        return f"{(self.first, self.second)[index % 2].url}/{repo}"


@pytest.fixture
def fleet(
    make_hub: MakeHub, fresh_postgres_url: str, s3_endpoint: str, s3_client, tmp_path: Path
) -> Fleet:
    data_dir = tmp_path / "shared"
    run_cli("db", "upgrade", "--data-dir", str(data_dir), "--database-url", fresh_postgres_url)
    env = {
        **AWS_ENV,
        "HFGIT_LFS_STORAGE": "s3",
        "HFGIT_LFS_S3_ENDPOINT": s3_endpoint,
        "HFGIT_LFS_S3_BUCKET": BUCKET,
    }
    first, second = (
        make_hub(data_dir=data_dir, database_url=fresh_postgres_url, env=env, workers=2)
        for _ in range(2)
    )
    return Fleet(first, second)


def _branch_tips(git: Git, url: str, token: str) -> dict[str, str]:
    listed = git.run("ls-remote", "--heads", url, token=token).stdout.split("\n")
    return {
        ref.removeprefix("refs/heads/"): sha
        for sha, ref in (line.split("\t") for line in listed if line)
    }


def test_concurrent_pushes_of_different_branches_through_both_all_land(
    fleet: Fleet, git: Git, tmp_path: Path
):
    user = fleet.first.make_user()
    repo = f"{user}/{unique('m')}"
    fleet.first.make_repo(repo, private=True)
    token = fleet.first.make_token(user, "write")
    base = git.init_worktree(tmp_path / "base")
    git.run("push", fleet.url(0, repo), "main", cwd=base, token=token)
    trees = []
    for index in range(8):
        work = tmp_path / f"work{index}"
        git.run("clone", "-q", str(base), str(work))
        trees.append((index, work, git.commit(work, {f"b{index}.txt": f"{index}\n"})))

    def push(item: tuple[int, Path, str]):
        index, work, _ = item
        return git.run(
            "push",
            fleet.url(index, repo),
            f"HEAD:refs/heads/b{index}",
            cwd=work,
            token=token,
            check=False,
        )

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(push, trees))
    assert [r.returncode for r in results] == [0] * 8, [r.stderr for r in results]

    expected = {f"b{index}": sha for index, _, sha in trees}
    for index in range(2):
        tips = _branch_tips(git, fleet.url(index, repo), token)
        assert {name: tips[name] for name in expected} == expected
    clone = tmp_path / "clone"
    git.run("clone", "-q", "--mirror", fleet.url(1, repo), str(clone), token=token)
    git.run("fsck", "--strict", cwd=clone)


def test_a_push_race_on_one_branch_has_one_winner_and_a_clean_refusal(
    fleet: Fleet, git: Git, tmp_path: Path
):
    user = fleet.first.make_user()
    repo = f"{user}/{unique('m')}"
    fleet.first.make_repo(repo, private=True)
    token = fleet.first.make_token(user, "write")
    base = git.init_worktree(tmp_path / "base")
    git.run("push", fleet.url(0, repo), "main", cwd=base, token=token)
    for attempt in range(3):
        trees = []
        for index in range(2):
            work = tmp_path / f"r{attempt}-{index}"
            git.run("clone", "-q", fleet.url(index, repo), str(work), token=token)
            trees.append((index, work, git.commit(work, {"race.txt": f"{attempt}-{index}\n"})))

        def push(item: tuple[int, Path, str]):
            index, work, _ = item
            return git.run(
                "push", fleet.url(index, repo), "main", cwd=work, token=token, check=False
            )

        with ThreadPoolExecutor(max_workers=2) as pool:
            results = list(pool.map(push, trees))
        winners = [sha for (_, _, sha), r in zip(trees, results, strict=True) if r.returncode == 0]
        losers = [r for r in results if r.returncode != 0]
        assert len(winners) == 1 and len(losers) == 1, [r.stderr for r in results]
        # Refused by git before sending (it saw the new tip) or by the server's
        # compare-and-swap (it did not): either way a rejection git explains.
        refusal = losers[0].stderr
        assert "[rejected]" in refusal or "[remote rejected]" in refusal, refusal
        assert "fetch first" in refusal or "stale info" in refusal, refusal
        for index in range(2):
            assert _branch_tips(git, fleet.url(index, repo), token)["main"] == winners[0]


def test_a_token_deleted_through_one_is_refused_by_the_other(fleet: Fleet, git: Git):
    user = fleet.first.make_user()
    repo = f"{user}/{unique('m')}"
    fleet.first.make_repo(repo, private=True)
    token = fleet.first.make_token(user, "write", name="ci")
    for index in range(2):
        git.run("ls-remote", fleet.url(index, repo), token=token)

    fleet.first.cli("token", "delete", user, "ci")

    refused = git.run("ls-remote", fleet.url(1, repo), token=token, check=False)
    assert refused.returncode != 0 and "Invalid username or password" in refused.stderr


def test_lfs_on_s3_through_both(fleet: Fleet, s3_client, lfs_git: Git, tmp_path: Path):
    user = fleet.first.make_user()
    repo = f"{user}/{unique('m')}"
    fleet.first.make_repo(repo, private=True)
    token = fleet.first.make_token(user, "write")
    weights = os.urandom(512 * 1024 + 3)
    oid = hashlib.sha256(weights).hexdigest()
    work, _ = lfs_worktree(lfs_git, tmp_path / "work", weights)
    lfs_git.run("push", "-q", fleet.url(0, repo), "main", cwd=work, token=token)
    more = os.urandom(256 * 1024)
    lfs_git.commit(work, {"more.safetensors": more})
    lfs_git.run("push", "-q", fleet.url(1, repo), "main", cwd=work, token=token)

    keys = {
        item["Key"].rsplit("/", 1)[-1]
        for item in s3_client.list_objects_v2(Bucket=BUCKET)["Contents"]
    }
    assert {oid, hashlib.sha256(more).hexdigest()} <= keys
    for index in range(2):
        clone = tmp_path / f"clone{index}"
        lfs_git.run("clone", "-q", fleet.url(index, repo), str(clone), token=token)
        assert (clone / "model.safetensors").read_bytes() == weights
        assert (clone / "more.safetensors").read_bytes() == more
