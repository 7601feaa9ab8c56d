"""examples/push_after_training.py pushes LFS weights using only the hf credential helper."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys
from pathlib import Path

from hubtest import ROOT, Git, Hub, unique
from lfs_support import enable_lfs, held


def test_push_after_training_uses_only_the_credential_helper(
    hub: Hub, git: Git, tmp_path: Path
) -> None:
    enable_lfs(git)
    user = hub.make_user()
    repo = hub.make_repo(f"{user}/{unique('trained')}", private=True)
    env = {
        **git.env,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HF_HOME": str(git.home / "hf"),
    }

    def hfgit(*args: str, input: str | None = None) -> None:
        result = subprocess.run(
            [sys.executable, "-m", "hfgit.cli", *args],
            input=input,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
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
    git.run("clone", "-q", hub.repo_url(repo), str(clone), token=hub.make_token(user, "read"))
    assert (clone / "model.safetensors").read_bytes() == weights


def test_lfs_requests_get_the_token_pinned_to_the_repo(hub: Hub, git: Git, tmp_path: Path) -> None:
    """git-lfs asks the helper with path ``ns/name.git/info/lfs``: the repo's own token answers."""
    enable_lfs(git)
    user = hub.make_user()
    repo = hub.make_repo(f"{user}/{unique('pinned')}", private=True)
    env = {
        **git.env,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "HF_HOME": str(git.home / "hf"),
    }
    pinned = hub.make_token(user, "fineGrained", scopes=[f"model:{repo.repo_id}=repo.write"])
    # The read token logs in last, so it is the endpoint's active one.
    login = [sys.executable, "-m", "hfgit.cli", "login", "--endpoint", hub.url, "--token-stdin"]
    for args, token in (
        (["--name", "pinned", "--repo", repo.repo_id], pinned),
        (["--name", "default"], hub.make_token(user, "read")),
    ):
        result = subprocess.run(
            [*login, *args],
            input=token,
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
    setup = subprocess.run(
        [sys.executable, "-m", "hfgit.cli", "setup-git", "--endpoint", hub.url],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert setup.returncode == 0, setup.stderr

    weights = os.urandom(200_000)
    work = tmp_path / "work"
    git.run("init", "-q", "-b", "main", str(work))
    git.run("lfs", "track", "*.safetensors", cwd=work)
    git.commit(work, {"model.safetensors": weights})
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
