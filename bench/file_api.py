"""The Hub file API's downloads: huggingface_hub against hfgit vs the same bytes served
statically, in the same run.

One ``hfgit serve`` (gunicorn, 2 workers, local LFS storage) holds a repository with one
LFS object (default 1000 MB) and another with 1,000 small files. A static web server
(Python's ``http.server``, threaded) serves the same bytes from a directory. Measured:

- ``hf_hub_download`` of the big file (a HEAD, then a streamed GET into a fresh cache)
  vs one streamed GET of the static copy with ``httpx2``, huggingface_hub's own HTTP
  client: throughput and the ratio (goal: at least 0.8);
- ``snapshot_download`` of the 1,000-file repository (revision, tree pages, then a HEAD
  and a GET per file on 8 threads) vs 8 threads GETting the 1,000 static files: the
  per-file overhead hfgit adds (goal: under 5 ms);
- the largest resident memory of any server process during the downloads (goal: flat,
  whatever the object size).

Run: ``python bench/file_api.py [--megabytes 1000] [--files 1000] [--runs 3]``
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
os.environ.setdefault("HF_HUB_DISABLE_XET", "1")
os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")

import httpx2
from huggingface_hub import CommitOperationAdd, HfApi, hf_hub_download, snapshot_download
from support import USER, ServerProcess, free_port, load_average

from hfgit.accounts import Accounts
from hfgit.config import MiB, Settings
from hfgit.names import RepoId


def _big_file(path: Path, size: int) -> str:
    digest = hashlib.sha256()
    block = os.urandom(4 * MiB)
    with path.open("wb") as out:
        written = 0
        while written < size:
            chunk = block[: min(len(block), size - written)]
            digest.update(chunk)
            out.write(chunk)
            written += len(chunk)
    return digest.hexdigest()


def _get(client: httpx2.Client, url: str, target: Path) -> None:
    with client.stream("GET", url) as response, target.open("wb") as out:
        response.raise_for_status()
        for chunk in response.iter_bytes(MiB):
            out.write(chunk)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=1000)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="hfgit-bench-files-"))
    try:
        return _run(work, args.megabytes * 1000 * 1000, args.files, args.runs)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _run(work: Path, size: int, count: int, runs: int) -> int:
    data_dir = work / "data"
    accounts = Accounts.open(Settings.load(data_dir))
    accounts.users.create_user(USER)
    token, _ = accounts.tokens.create(USER, "bench", "write")
    big_repo, many_repo = RepoId("model", USER, "big"), RepoId("model", USER, "many")
    accounts.repos.create(big_repo)
    accounts.repos.create(many_repo)
    port = free_port()
    command = [sys.executable, "-m", "hfgit.cli", "serve", "--data-dir", str(data_dir)]
    command += ["--port", str(port), "--workers", "2"]
    server = ServerProcess.start(command, port, work / "serve.log")
    static_root = work / "static"
    (static_root / "many").mkdir(parents=True)
    static_port = free_port()
    static = ServerProcess.start(
        [
            sys.executable,
            "-m",
            "http.server",
            str(static_port),
            "-b",
            "127.0.0.1",
            "-d",
            str(static_root),
        ],
        static_port,
        work / "static.log",
        probe="/",
    )
    try:
        api = HfApi(endpoint=server.url, token=token)
        print(f"preparing: {size / 1e6:.0f} MB LFS object, {count} small files", flush=True)
        oid = _big_file(static_root / "big.bin", size)
        api.upload_file(
            path_or_fileobj=static_root / "big.bin", path_in_repo="big.bin", repo_id="bench/big"
        )
        operations = []
        for index in range(count):
            name = f"d{index % 10}/f{index:05d}.txt"
            content = os.urandom(512)
            (static_root / "many" / name).parent.mkdir(exist_ok=True)
            (static_root / "many" / name).write_bytes(content)
            operations.append(CommitOperationAdd(name, content))
        api.create_commit("bench/many", operations, commit_message="many files")
        names = [op.path_in_repo for op in operations]

        seconds: dict[str, list[float]] = {
            k: [] for k in ("hf_big", "static_big", "hf_many", "static_many")
        }
        peaks: list[float] = []
        idle = server.rss_mib()
        client = httpx2.Client(timeout=120)
        for run in range(runs):
            cache = work / f"cache{run}"
            with server.peak_rss(peaks):
                start = time.perf_counter()
                path = hf_hub_download(
                    "bench/big", "big.bin", endpoint=server.url, token=token, cache_dir=cache
                )
                seconds["hf_big"].append(time.perf_counter() - start)
                assert os.path.getsize(path) == size and Path(path).resolve().name == oid
                start = time.perf_counter()
                snapshot_download("bench/many", endpoint=server.url, token=token, cache_dir=cache)
                seconds["hf_many"].append(time.perf_counter() - start)
            target = work / f"static{run}.bin"
            start = time.perf_counter()
            _get(client, f"{static.url}/big.bin", target)
            seconds["static_big"].append(time.perf_counter() - start)
            out = work / f"static-many{run}"
            out.mkdir()
            start = time.perf_counter()
            with ThreadPoolExecutor(8) as pool:
                list(
                    pool.map(
                        lambda n, out=out: _get(
                            client, f"{static.url}/many/{n}", out / n.replace("/", "_")
                        ),
                        names,
                    )
                )
            seconds["static_many"].append(time.perf_counter() - start)
            shutil.rmtree(cache)
            target.unlink()
            shutil.rmtree(out)
        median = {key: statistics.median(values) for key, values in seconds.items()}
        rate = {key: size / 1e6 / median[key] for key in ("hf_big", "static_big")}
        overhead = (median["hf_many"] - median["static_many"]) / count * 1000
        print(f"load average {load_average()}; medians of {runs} runs")
        print(
            f"  hf_hub_download {size / 1e6:.0f} MB: {rate['hf_big']:8.1f} MB/s   "
            f"static GET: {rate['static_big']:8.1f} MB/s   "
            f"ratio {rate['hf_big'] / rate['static_big']:.2f} (goal >= 0.8)"
        )
        print(
            f"  snapshot_download {count} files: {median['hf_many']:.2f} s   "
            f"static 8-thread GETs: {median['static_many']:.2f} s   "
            f"overhead per file {overhead:.2f} ms (goal < 5 ms)"
        )
        print(f"  server peak RSS: idle {idle:.0f} MiB, during downloads {max(peaks):.0f} MiB")
        return 0
    finally:
        static.stop()
        server.stop()
        accounts.store.dispose()


if __name__ == "__main__":
    sys.exit(main())
