"""Push freshly "trained" weights to an hfgit server with Git LFS.

The script writes a few MB of random weights as ``model.safetensors`` (standing in for a
real training run), tracks ``*.safetensors`` with Git LFS, commits and pushes. It never
sees a token: git and git-lfs ask the ``hf`` credential helper, set up once with

    hfgit login --endpoint http://127.0.0.1:8080 --token-stdin   # paste a write token
    hfgit setup-git --endpoint http://127.0.0.1:8080

Run:  python examples/push_after_training.py --endpoint URL --repo alice/my-model WORKDIR
"""

from __future__ import annotations

import argparse
import hashlib
import os
import subprocess
import sys
from pathlib import Path


def train(out: Path, megabytes: int) -> str:
    """Stand-in for training: random weights, written in chunks; returns their sha256."""
    digest = hashlib.sha256()
    with out.open("wb") as handle:
        for _ in range(megabytes):
            chunk = os.urandom(1024 * 1024)
            digest.update(chunk)
            handle.write(chunk)
    return digest.hexdigest()


def git(*args: str, cwd: Path) -> None:
    subprocess.run(["git", *args], cwd=cwd, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--endpoint", default=os.environ.get("HF_ENDPOINT"))
    parser.add_argument("--repo", required=True, help="NS/NAME (datasets/NS/NAME, spaces/…)")
    parser.add_argument("--megabytes", type=int, default=4)
    parser.add_argument("workdir", type=Path)
    args = parser.parse_args(argv)
    if not args.endpoint:
        parser.error("give --endpoint or set HF_ENDPOINT")

    work = args.workdir
    work.mkdir(parents=True, exist_ok=True)
    git("init", "-q", "-b", "main", cwd=work)
    git("lfs", "install", "--local", cwd=work)
    git("lfs", "track", "*.safetensors", cwd=work)
    oid = train(work / "model.safetensors", args.megabytes)
    git("add", ".gitattributes", "model.safetensors", cwd=work)
    git("commit", "-q", "-m", "Add trained weights", cwd=work)
    git("push", "-q", f"{args.endpoint.rstrip('/')}/{args.repo}", "main", cwd=work)
    print(f"pushed model.safetensors ({args.megabytes} MB, sha256 {oid}) to {args.repo}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
