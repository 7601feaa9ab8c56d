"""Server memory during big pushes through ``hfgit serve``: what one push costs in RSS.

Issue 10's goal: the server's memory grows at most 150 MiB over its idle level during any
push within the limits, whatever the object size (up to ``HFGIT_MAX_OBJECT_BYTES``,
100 MiB by default). Each workload is pushed with the real ``git`` into a fresh
repository of one ``hfgit serve`` (gunicorn, 2 workers); a thread samples every 20 ms
the resident memory of the whole server process tree (master, workers and any child)
from ``/proc``. Printed per workload: the idle sum before the push, the peak sum during
it, the growth, and the peak of the single largest process (the worker that took it).

Workloads (incompressible bytes, so the pack is as large as the files):

- ``file30``: one 30 MB file;
- ``object95``: one 95 MiB file, stored whole;
- ``many200``: 200 MB in 40 files of 5 MB;
- ``delta95``: a 95 MiB file pushed, then a second commit that changes 1 MiB of it:
  git sends the new version as a delta against the one the server has (a thin pack).

Run: ``python bench/push_memory.py [--only object95,delta95]``
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from support import USER, Git, ServerProcess, free_port

from hfgit.accounts import Accounts
from hfgit.config import MiB, Settings
from hfgit.names import RepoId

WORKLOADS = ("file30", "object95", "many200", "delta95")


def tree_rss_mib(root: int) -> tuple[float, float]:
    """(sum over the process tree, largest single process) of VmRSS, in MiB."""
    pids = [root]
    index = 0
    while index < len(pids):
        pid = pids[index]
        index += 1
        try:
            for task in Path(f"/proc/{pid}/task").iterdir():
                pids.extend(int(c) for c in (task / "children").read_text().split())
        except FileNotFoundError:
            continue
    sizes = []
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    sizes.append(int(line.split()[1]) / 1024)
        except FileNotFoundError:
            pass
    return sum(sizes), max(sizes, default=0.0)


class Sampler:
    """Samples :func:`tree_rss_mib` every 20 ms while a block runs."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak_sum = 0.0
        self.peak_one = 0.0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._done.is_set():
            total, one = tree_rss_mib(self.pid)
            self.peak_sum = max(self.peak_sum, total)
            self.peak_one = max(self.peak_one, one)
            self._done.wait(0.02)

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


def write_random(path: Path, size: int, rng: random.Random) -> None:
    with path.open("wb") as out:
        left = size
        while left:
            step = min(left, MiB)
            out.write(rng.randbytes(step))
            left -= step


def prepare(git: Git, work: Path, name: str) -> Path:
    """A work tree with one commit holding the workload's files."""
    rng = random.Random(7)
    tree = work / name
    git.run("init", "-q", "-b", "main", str(tree))
    if name == "file30":
        write_random(tree / "big.bin", 30 * 1000 * 1000, rng)
    elif name in ("object95", "delta95"):
        write_random(tree / "big.bin", 95 * MiB, rng)
    elif name == "many200":
        for index in range(40):
            write_random(tree / f"part-{index:02d}.bin", 5 * 1000 * 1000, rng)
    git.run("add", "-A", cwd=tree)
    git.run("commit", "-q", "-m", "add", cwd=tree)
    return tree


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default=",".join(WORKLOADS))
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args(argv)
    chosen = [w for w in args.only.split(",") if w]
    work = Path(tempfile.mkdtemp(prefix="hfgit-pushmem-"))
    data_dir = work / "data"
    accounts = Accounts.open(Settings.load(data_dir))
    accounts.users.create_user(USER)
    token, _ = accounts.tokens.create(USER, "bench", "write")
    git = Git(work / "home", token)
    port = free_port()
    command = [sys.executable, "-m", "hfgit.cli", "serve", "--data-dir", str(data_dir)]
    command += ["--port", str(port), "--workers", "2"]
    env = {"HFGIT_MAX_BLOB_BYTES": str(200 * MiB)}
    server = ServerProcess.start(command, port, work / "serve.log", env=env)
    rows = []
    try:
        for name in chosen:
            tree = prepare(git, work, name)
            repo = RepoId("model", USER, name)
            accounts.repos.create(repo, private=True)
            url = f"{server.url}/{repo.url_path}"
            if name == "delta95":
                git.run("push", "-q", url, "main", cwd=tree)
                with (tree / "big.bin").open("r+b") as out:
                    out.seek(40 * MiB)
                    out.write(random.Random(8).randbytes(MiB))
                git.run("commit", "-q", "-am", "change 1 MiB", cwd=tree)
            time.sleep(1.0)
            idle, _ = tree_rss_mib(server.process.pid)
            with Sampler(server.process.pid) as sampler:
                started = time.perf_counter()
                git.run("push", "-q", url, "main", cwd=tree)
                seconds = time.perf_counter() - started
            rows.append((name, idle, sampler.peak_sum, sampler.peak_one, seconds))
            print(
                f"{name:9} idle {idle:6.0f} MiB  peak {sampler.peak_sum:6.0f} MiB  growth "
                f"{sampler.peak_sum - idle:6.0f} MiB  largest process {sampler.peak_one:6.0f}"
                f" MiB  {seconds:5.1f} s",
                flush=True,
            )
            shutil.rmtree(tree)
    finally:
        server.stop()
        accounts.store.dispose()
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
