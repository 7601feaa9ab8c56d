"""Push and clone through the hardened handlers vs plain dulwich handlers (issue 3).

The starting point of issue 3 is dulwich's own ``ReceivePackHandler`` and
``UploadPackHandler``. This benchmark feeds both the same requests, in process and
stateless as over HTTP, so the difference is the handlers alone (quarantine, object
and connectivity checks, lock, CAS; want/have checks):

* **push**: a pack made by ``git pack-objects`` of a repository with ``--commits``
  commits, each touching a few small files, plus one 8 MB file, into an empty bare
  repository (a fresh copy each run);
* **clone**: ``want`` the tip, ``done``, the whole pack back.

It prints medians over ``--runs`` runs (after one warm-up) and the ratio
hardened / dulwich; the goal is at most 1.05.

    .venv/bin/python bench/push_clone.py            # about a minute on 2 cores
    .venv/bin/python bench/push_clone.py --quick
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
import time
from io import BytesIO
from pathlib import Path

from dulwich.protocol import ReceivableProtocol
from dulwich.repo import Repo
from dulwich.server import ReceivePackHandler, UploadPackHandler

from hfgit.config import Settings
from hfgit.server.git import _OneRepoBackend
from hfgit.server.receive import HardenedReceivePackHandler, PushLimits
from hfgit.server.upload import FetchLimits, HardenedUploadPackHandler

ZERO = b"0" * 40
ENV = {
    "PATH": os.environ["PATH"],
    "HOME": "/nonexistent",
    "GIT_CONFIG_NOSYSTEM": "1",
    "GIT_AUTHOR_NAME": "b",
    "GIT_AUTHOR_EMAIL": "b@example.com",
    "GIT_COMMITTER_NAME": "b",
    "GIT_COMMITTER_EMAIL": "b@example.com",
}


def pkt(data: bytes) -> bytes:
    return f"{len(data) + 4:04x}".encode() + data


def git(*args: str, cwd: Path, input: bytes | None = None) -> bytes:
    return subprocess.run(
        ["git", *args], cwd=cwd, env=ENV, input=input, capture_output=True, check=True
    ).stdout


def make_source(root: Path, commits: int) -> tuple[bytes, bytes]:
    """A work tree with history; returns (tip, pack of everything)."""
    work = root / "src"
    git("init", "-q", "-b", "main", str(work), cwd=root)
    (work / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    for index in range(commits):
        for name in range(3):
            path = work / f"dir{name}" / f"file{index % 20}.txt"
            path.parent.mkdir(exist_ok=True)
            path.write_text(f"commit {index} file {name}\n" * 50)
        git("add", "-A", cwd=work)
        git("commit", "-q", "-m", f"c{index}", cwd=work)
    tip = git("rev-parse", "HEAD", cwd=work).strip()
    pack = git("pack-objects", "--all", "--stdout", "--revs", cwd=work, input=b"")
    return tip, pack


def run(handler, repo: Repo, body: bytes, **kw) -> tuple[float, bytes]:
    out = BytesIO()
    proto = ReceivableProtocol(BytesIO(body).read, out.write)
    start = time.perf_counter()
    handler(_OneRepoBackend(repo), ["/"], proto, stateless_rpc=True, **kw).handle()
    return time.perf_counter() - start, out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--commits", type=int, default=200)
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.commits = 3, 40
    settings = Settings(data_dir=Path(tempfile.gettempdir()), database_url="sqlite://")
    push_limits = PushLimits.from_settings(settings)
    fetch_limits = FetchLimits.from_settings(settings)

    with tempfile.TemporaryDirectory(prefix="hfgit-bench-") as tmp:
        root = Path(tmp)
        tip, pack = make_source(root, args.commits)
        empty = root / "empty.git"
        Repo.init_bare(str(empty), mkdir=True)
        push = pkt(ZERO + b" " + tip + b" refs/heads/main\0report-status ofs-delta\n")
        push += b"0000" + pack
        clone = pkt(b"want " + tip + b" multi_ack_detailed side-band-64k thin-pack ofs-delta\n")
        clone += b"0000" + pkt(b"done\n")
        variants = {
            "dulwich": (ReceivePackHandler, {}, UploadPackHandler, {}),
            "hardened": (
                HardenedReceivePackHandler,
                {"limits": push_limits},
                HardenedUploadPackHandler,
                {"limits": fetch_limits},
            ),
        }
        times: dict[str, dict[str, list[float]]] = {
            name: {"push": [], "clone": []} for name in variants
        }
        for run_index in range(args.runs + 1):
            for name, (receive, receive_kw, upload, upload_kw) in variants.items():
                target = root / f"{name}-{run_index}.git"
                shutil.copytree(empty, target)
                with Repo(str(target)) as repo:
                    took, answer = run(receive, repo, push, **receive_kw)
                    assert b"ok refs/heads/main" in answer, answer[-200:]
                    if run_index:
                        times[name]["push"].append(took)
                with Repo(str(target)) as repo:
                    took, answer = run(upload, repo, clone, **upload_kw)
                    assert b"PACK" in answer
                    if run_index:
                        times[name]["clone"].append(took)
                shutil.rmtree(target)

    print(f"pack: {len(pack) / 2**20:.1f} MiB, {args.commits} commits + one 8 MB file")
    print(f"medians over {args.runs} runs (seconds):")
    for op in ("push", "clone"):
        base = statistics.median(times["dulwich"][op])
        ours = statistics.median(times["hardened"][op])
        print(f"  {op:5}  dulwich {base:.3f}  hardened {ours:.3f}  ratio {ours / base:.3f}")


if __name__ == "__main__":
    main()
