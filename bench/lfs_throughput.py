"""LFS throughput through hfgit: git push/clone of one big LFS object vs plain curl.

One ``hfgit serve`` (gunicorn, the default local storage) runs for the whole benchmark.
Each run pushes a repository holding one LFS object (default 200 MB) with the real
``git`` + ``git-lfs`` to a fresh repository, clones it back (and, separately, times
``git lfs fetch`` alone, without the checkout git-lfs does on clone), then moves the same file
with ``curl`` (PUT to a signed upload URL of another fresh repository, GET of a signed
download URL) against the same server process. Printed: medians in MB/s, the ratios
git/curl (goal: at least 0.8), and the largest resident memory of any server process
seen while each kind of transfer ran (goal: under 150 MB whatever the object size).

Run: ``python bench/lfs_throughput.py [--megabytes 200] [--runs 3]``
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

from support import USER, Git, ServerProcess, free_port

from hfgit.accounts import Accounts
from hfgit.config import MiB, Settings
from hfgit.names import RepoId

MEDIA = "application/vnd.git-lfs+json"


class Bench:
    def __init__(self, work: Path, megabytes: int) -> None:
        self.work = work
        self.size = megabytes * MiB
        self.data_dir = work / "data"
        self.accounts = Accounts.open(Settings.load(self.data_dir))
        self.accounts.users.create_user(USER)
        self.token, _ = self.accounts.tokens.create(USER, "bench", "write")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.git = Git(work / "home", self.token)
        self._counter = 0

    def start(self) -> ServerProcess:
        command = [sys.executable, "-m", "hfgit.cli", "serve", "--data-dir", str(self.data_dir)]
        command += ["--port", str(self.port), "--workers", "2"]
        return ServerProcess.start(command, self.port, self.work / "serve.log")

    def new_repo(self) -> RepoId:
        self._counter += 1
        repo = RepoId("model", USER, f"run{self._counter}")
        self.accounts.repos.create(repo)
        return repo

    def prepare(self) -> tuple[Path, str]:
        """A work tree with the big object committed (hashing happens here, untimed)."""
        source = self.work / "source"
        self.git.run("lfs", "install", "--skip-repo")
        self.git.run("init", "-q", "-b", "main", str(source))
        self.git.run("lfs", "track", "*.safetensors", cwd=source)
        with (source / "model.safetensors").open("wb") as out:
            for _ in range(self.size // MiB):
                out.write(os.urandom(MiB))
        self.git.run("add", ".", cwd=source)
        self.git.run("commit", "-q", "-m", "weights", cwd=source)
        pointer = self.git.run("show", "HEAD:model.safetensors", cwd=source).decode()
        oid = pointer.split("oid sha256:")[1].split()[0]
        return source, oid

    def signed(self, repo: RepoId, operation: str, oid: str) -> str:
        """A transfer URL from the batch API (the token travels in a header only)."""
        body = {"operation": operation, "objects": [{"oid": oid, "size": self.size}]}
        basic = base64.b64encode(f"{USER}:{self.token}".encode()).decode()
        request = urllib.request.Request(
            f"{self.url}/{repo.url_path}.git/info/lfs/objects/batch",
            data=json.dumps(body).encode(),
            headers={"Content-Type": MEDIA, "Accept": MEDIA, "Authorization": f"Basic {basic}"},
        )
        with urllib.request.urlopen(request) as response:
            answer = json.load(response)
        return answer["objects"][0]["actions"][operation]["href"]


def curl(*args: str) -> float:
    started = time.perf_counter()
    subprocess.run(["curl", "-sS", "-f", *args], check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def curl_verified(url: str, target: Path, oid: str) -> float:
    """GET while hashing, as any LFS client must: the fastest a verifying download can be
    with the machine's own tools (curl | tee | sha256sum)."""
    started = time.perf_counter()
    result = subprocess.run(
        [
            "bash",
            "-c",
            'set -o pipefail; curl -sS -f "$1" | tee "$2" | sha256sum',
            "-",
            url,
            str(target),
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    elapsed = time.perf_counter() - started
    if not result.stdout.startswith(oid):
        raise RuntimeError("the verified download does not hash to the object id")
    return elapsed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=200)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    for tool in ("git", "git-lfs", "curl", "sha256sum"):
        if shutil.which(tool) is None:
            parser.error(f"needs {tool} on PATH")

    work = Path(tempfile.mkdtemp(prefix="hfgit-lfs-bench-"))
    bench = Bench(work, args.megabytes)
    server = bench.start()
    seconds: dict[str, list[float]] = {
        k: [] for k in ("push", "clone", "fetch", "put", "get", "verified")
    }
    peaks: dict[str, list[float]] = {"git": [], "curl": []}
    try:
        print(f"preparing a {args.megabytes} MB LFS object ...", flush=True)
        source, oid = bench.prepare()
        idle = server.rss_mib()
        for run in range(args.runs):
            print(f"run {run + 1}/{args.runs} ...", flush=True)
            repo = bench.new_repo()
            url = f"{bench.url}/{repo.url_path}"
            clone = work / "clone"
            with server.peak_rss(peaks["git"]):
                seconds["push"].append(bench.git.timed("push", "-q", url, "main", cwd=source))
                seconds["clone"].append(bench.git.timed("clone", "-q", url, str(clone)))
                shutil.rmtree(clone)
                # The download alone, without git-lfs's copy into the work tree.
                bench.git.env["GIT_LFS_SKIP_SMUDGE"] = "1"
                bench.git.run("clone", "-q", url, str(clone))
                del bench.git.env["GIT_LFS_SKIP_SMUDGE"]
                seconds["fetch"].append(bench.git.timed("lfs", "fetch", cwd=clone))
            shutil.rmtree(clone)

            other = bench.new_repo()
            put_url = bench.signed(other, "upload", oid)
            get_url = bench.signed(repo, "download", oid)
            target = work / "download"
            with server.peak_rss(peaks["curl"]):
                seconds["put"].append(
                    curl(
                        "-X",
                        "PUT",
                        "-H",
                        "Content-Type: application/octet-stream",
                        "--data-binary",
                        f"@{source / 'model.safetensors'}",
                        put_url,
                    )
                )
                seconds["get"].append(curl("-o", str(target), get_url))
                target.unlink()
                seconds["verified"].append(curl_verified(get_url, target, oid))
            target.unlink()
    finally:
        server.stop()
        bench.accounts.store.dispose()
        shutil.rmtree(work, ignore_errors=True)

    mb = args.megabytes * MiB / 1e6
    rate = {key: mb / statistics.median(values) for key, values in seconds.items()}
    print(f"\none {args.megabytes} MiB LFS object, median of {args.runs} runs")
    print(f"  git push  {rate['push']:8.1f} MB/s   curl PUT {rate['put']:8.1f} MB/s")
    print(f"  git clone {rate['clone']:8.1f} MB/s   curl GET {rate['get']:8.1f} MB/s")
    print(f"  ratio push/PUT  {rate['push'] / rate['put']:.2f}   (goal >= 0.80)")
    print(f"  git lfs fetch {rate['fetch']:8.1f} MB/s (the download alone, no checkout)")
    print(f"  ratio clone/GET {rate['clone'] / rate['get']:.2f}   (goal >= 0.80)")
    print(f"  ratio fetch/GET {rate['fetch'] / rate['get']:.2f}")
    print(
        f"  curl GET | sha256sum {rate['verified']:8.1f} MB/s (a download that verifies its "
        "bytes, as git-lfs must)"
    )
    print(f"  ratio clone/verified GET {rate['clone'] / rate['verified']:.2f}")
    print(f"  ratio fetch/verified GET {rate['fetch'] / rate['verified']:.2f}")
    print(
        f"  server peak RSS: idle {idle:.0f} MiB, during git {max(peaks['git']):.0f} MiB, "
        f"during curl {max(peaks['curl']):.0f} MiB   (goal < 150 MiB)"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
