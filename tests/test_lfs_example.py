"""examples/push_after_training.py pushes LFS weights using only the hf credential helper."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

from hubtest import ROOT, Git, Hub, run_cli, unique
from lfs_support import held, lfs_worktree


def user_env(git: Git) -> dict[str, str]:
    """git's isolated HOME, with hfgit's helper on PATH and huggingface_hub's home in it."""
    return {
        **git.env,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HF_HOME": str(git.home / "hf"),
    }


def test_push_after_training_uses_only_the_credential_helper(
    hub: Hub, lfs_git: Git, tmp_path: Path
) -> None:
    user = hub.make_user()
    repo = hub.make_repo(f"{user}/{unique('trained')}", private=True)
    env = user_env(lfs_git)

    def hfgit(*args: str, input: str | None = None) -> None:
        result = run_cli(*args, input=input, env=env, check=False)
        assert result.returncode == 0, result.stderr

    hfgit("login", "--endpoint", hub.url, "--token-stdin", input=hub.make_token(user, "write"))
    hfgit("setup-git", "--endpoint", hub.url)

    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "examples" / "push_after_training.py"),
            "--endpoint",
            hub.url,
            "--repo",
            repo.repo_id,
            "--megabytes",
            "3",
            str(tmp_path / "run"),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    oid = re.search(r"sha256 ([0-9a-f]{64})", result.stdout).group(1)
    weights = (tmp_path / "run" / "model.safetensors").read_bytes()
    assert hashlib.sha256(weights).hexdigest() == oid
    assert held(hub, repo, oid)
    assert not re.search(r"hf_[A-Za-z]{34}", result.stdout + result.stderr)

    clone = tmp_path / "clone"
    lfs_git.run("clone", "-q", hub.repo_url(repo), str(clone), token=hub.make_token(user, "read"))
    assert (clone / "model.safetensors").read_bytes() == weights


def test_lfs_requests_get_the_token_pinned_to_the_repo(
    hub: Hub, lfs_git: Git, tmp_path: Path
) -> None:
    """git-lfs asks the helper with path ``ns/name.git/info/lfs``: the repo's own token answers."""
    user = hub.make_user()
    repo = hub.make_repo(f"{user}/{unique('pinned')}", private=True)
    env = user_env(lfs_git)
    pinned = hub.make_token(user, "fineGrained", scopes=[f"model:{repo.repo_id}=repo.write"])
    # The read token logs in last, so it is the endpoint's active one.
    login = ["login", "--endpoint", hub.url, "--token-stdin"]
    for args, token in (
        (["--name", "pinned", "--repo", repo.repo_id], pinned),
        (["--name", "default"], hub.make_token(user, "read")),
    ):
        result = run_cli(*login, *args, input=token, env=env, check=False)
        assert result.returncode == 0, result.stderr
    setup = run_cli("setup-git", "--endpoint", hub.url, env=env, check=False)
    assert setup.returncode == 0, setup.stderr

    weights = os.urandom(200_000)
    work, _ = lfs_worktree(lfs_git, tmp_path / "work", weights)
    push = subprocess.run(
        ["git", "push", "-q", hub.repo_url(repo), "main"],
        cwd=work,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert push.returncode == 0, push.stderr
    assert held(hub, repo, hashlib.sha256(weights).hexdigest())
