"""Minutes of mixed concurrent load on one ``hfgit serve``: does every operation succeed?

Twelve clients (by default) share two private repositories for ``--seconds`` each engine,
every one looping over its role with the real ``git`` and a write token:

* **clone**: ``git clone --bare``, then its ``main`` must be a commit some push landed;
* **fetch**: ``git fetch`` into a clone that holds 40 commits of its own nobody else has,
  so every fetch negotiates over several rounds (``multi_ack_detailed``, stateless HTTP);
* **push**: a new commit on the ``main`` it just fetched, pushed to ``main``. Pushes race
  one another: one that lost the race is rejected (non-fast-forward or the server's
  compare-and-swap), which is expected and counted apart; every push that was accepted
  must still be in ``main``'s history at the end (nothing lost);
* **lfs**: a new object through the LFS batch API (upload, verify), then downloaded
  through it again and compared byte for byte;
* **api**: the Hub API's repository info and ``/resolve`` of a file.

Fetches and clones happen while pushes move ``main``: the wants of a fetch may be tips
that moved between its advertisement and its POST, which must still be served.

Reported per engine: operations done and failed by role (a failure's first message is
printed), the server's HTTP 5xx (from its access log), a final ``git fsck`` of the
server's repositories, and the whole server process tree's resident memory: after
a warm-up (``--warmup`` seconds of the same load, then a rest: idle), its peak under
load, and after the load stopped and the server rested (goal: back within 1.2x of idle).

    .venv/bin/python bench/mixed_load.py                      # both engines, 3 min each
    .venv/bin/python bench/mixed_load.py --engines git --seconds 60
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from gate_bench import machine_facts
from support import (
    USER,
    BenchError,
    Git,
    ServerProcess,
    closing_line,
    free_port,
    history_stream,
    load_average,
    rss_mib,
    tree_pids,
    tree_usage,
)

from hfgit.accounts import Accounts
from hfgit.config import Settings
from hfgit.names import RepoId

WORKERS = 2
ROLES = {"clone": 3, "fetch": 3, "push": 3, "lfs": 1, "api": 2}
REPOS = ("alpha", "beta")
LOCAL_COMMITS = 40
LFS_BYTES = 256 * 1024
LFS_MEDIA = "application/vnd.git-lfs+json"
MEMORY_GOAL = 1.2
#: Why git says a push lost a race: its own refusal of a non-fast-forward, or the reason
#: the server's compare-and-swap gave in report-status (the ref moved meanwhile).
RACE_LOST = re.compile(rb"\((?:fetch first|non-fast-forward|stale info)\)")
SERVER_ERROR = re.compile(r'" (5\d\d) ')


@dataclass
class Tally:
    """What the clients of one role did."""

    done: int = 0
    lost_races: int = 0
    failures: list[str] = field(default_factory=list)


@dataclass
class Hub:
    """One ``hfgit serve`` and what the clients need to reach it."""

    process: ServerProcess
    data_dir: Path
    token: str
    paths: dict[str, Path]
    #: Every commit a push landed on ``main`` of each repository (and the first one).
    landed: dict[str, list[str]]
    #: ... and every commit a push tried to land: a clone may see one before its push
    #: has returned.
    attempted: dict[str, set[str]]
    lock: threading.Lock = field(default_factory=threading.Lock)

    def url(self, repo: str) -> str:
        return f"{self.process.url}/{USER}/{repo}"

    def request(self, method: str, path: str, body: bytes | None = None, **headers: str):
        """An HTTP request with the token as Bearer; returns (status, body)."""
        headers = {"Authorization": f"Bearer {self.token}", **headers}
        request = urllib.request.Request(
            self.process.url + path, data=body, method=method, headers=headers
        )
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()


def start_hub(work: Path, engine: str, git: Git, source: Path) -> Hub:
    data_dir = work / f"hfgit-{engine}"
    accounts = Accounts.open(Settings.load(data_dir))
    accounts.users.create_user(USER)
    token, _ = accounts.tokens.create(USER, "mixed-load", "write")
    paths = {}
    for name in REPOS:
        record = accounts.repos.create(RepoId("model", USER, name), private=True)
        paths[name] = accounts.repos.path(record)
        git.seed(source, paths[name])
    port = free_port()
    command = [sys.executable, "-m", "hfgit.cli", "serve", "--data-dir", str(data_dir)]
    command += ["--port", str(port), "--workers", str(WORKERS), "--engine", engine]
    # Every client connects from 127.0.0.1, which hfgit's per-client cap on requests in
    # service (8 by default) would count as one client: the cap is raised to what twelve
    # clients on twelve machines would get between them.
    env = {"HFGIT_MAX_REQUESTS_PER_CLIENT": str(8 * sum(ROLES.values()))}
    process = ServerProcess.start(command, port, work / f"hfgit-{engine}.log", env=env)
    head = git.head(source)
    landed = {name: [head] for name in REPOS}
    return Hub(process, data_dir, token, paths, landed, {name: {head} for name in REPOS})


# The clients


class Client:
    """One client thread's git, scratch directory and role."""

    def __init__(self, hub: Hub, work: Path, number: int, role: str) -> None:
        self.hub = hub
        self.role = role
        self.repo = REPOS[number % len(REPOS)]
        self.dir = work / f"client-{number}"
        self.dir.mkdir(parents=True)
        self.git = Git(self.dir / "home", hub.token)
        self.clone = self.dir / "clone"
        self.rounds = 0

    def prepare(self) -> None:
        """A clone of its own for fetch and push; the fetchers add commits nobody else has."""
        if self.role not in ("fetch", "push"):
            return
        self.git.run("clone", "-q", "--no-checkout", self.hub.url(self.repo), str(self.clone))
        if self.role == "fetch":
            for i in range(LOCAL_COMMITS):
                parent = "refs/heads/local" if i else "HEAD"
                self.commit(f"local {i} of {self.dir.name}", parent, update="refs/heads/local")

    def commit(self, message: str, parent: str, *, update: str | None = None) -> str:
        """A commit on ``parent`` adding one file, made with plumbing (no work tree)."""
        gitdir = ["--git-dir", str(self.clone / ".git")]
        blob = (
            self.git.run(*gitdir, "hash-object", "-w", "--stdin", input=message.encode() * 64)
            .decode()
            .strip()
        )
        base_tree = self.git.run(*gitdir, "rev-parse", f"{parent}^{{tree}}").decode().strip()
        self.git.run(*gitdir, "read-tree", base_tree)
        name = f"runs/{self.dir.name}-{self.rounds}.txt"
        self.git.run(*gitdir, "update-index", "--add", "--cacheinfo", f"100644,{blob},{name}")
        tree = self.git.run(*gitdir, "write-tree").decode().strip()
        sha = self.git.run(*gitdir, "commit-tree", tree, "-p", parent, "-m", message)
        sha = sha.decode().strip()
        if update:
            self.git.run(*gitdir, "update-ref", update, sha)
        return sha

    def step(self, tally: Tally) -> None:
        self.rounds += 1
        getattr(self, f"_{self.role}")(tally)

    def _clone(self, tally: Tally) -> None:
        dest = self.dir / f"bare-{self.rounds}"
        try:
            self.git.run("clone", "-q", "--bare", self.hub.url(self.repo), str(dest))
            head = self.git.head(dest)
            with self.hub.lock:
                known = head in self.hub.attempted[self.repo]
            if not known:
                raise BenchError(f"clone's main {head} is no commit a push landed")
        finally:
            shutil.rmtree(dest, ignore_errors=True)
        tally.done += 1

    def _fetch(self, tally: Tally) -> None:
        self.git.run("--git-dir", str(self.clone / ".git"), "fetch", "-q", "origin")
        tally.done += 1

    def _push(self, tally: Tally) -> None:
        gitdir = ["--git-dir", str(self.clone / ".git")]
        self.git.run(*gitdir, "fetch", "-q", "origin", "main")
        sha = self.commit(f"push {self.rounds} of {self.dir.name}", "FETCH_HEAD")
        with self.hub.lock:
            self.hub.attempted[self.repo].add(sha)
        result = subprocess.run(
            ["git", *self.git.config, *gitdir, "push", "-q", "origin", f"{sha}:refs/heads/main"],
            capture_output=True,
            env=self.git.env,
            timeout=600,
        )
        if result.returncode == 0:
            with self.hub.lock:
                self.hub.landed[self.repo].append(sha)
            tally.done += 1
        elif RACE_LOST.search(result.stderr):
            tally.lost_races += 1
        else:
            raise BenchError(f"push failed: {result.stderr.decode(errors='replace')[-500:]}")

    def _lfs(self, tally: Tally) -> None:
        data = os.urandom(LFS_BYTES)
        oid = hashlib.sha256(data).hexdigest()
        upload = self._lfs_batch("upload", oid)
        _follow(upload["upload"], "PUT", data)
        verify = json.dumps({"oid": oid, "size": LFS_BYTES}).encode()
        _follow(upload["verify"], "POST", verify, {"Content-Type": LFS_MEDIA})
        if _follow(self._lfs_batch("download", oid)["download"], "GET") != data:
            raise BenchError(f"LFS object {oid} came back different")
        tally.done += 1

    def _lfs_batch(self, operation: str, oid: str) -> dict:
        """The actions the batch API gives for one object of :data:`LFS_BYTES`."""
        batch = {"operation": operation, "transfers": ["basic"]}
        batch["objects"] = [{"oid": oid, "size": LFS_BYTES}]
        status, body = self.hub.request(
            "POST",
            f"/{USER}/{self.repo}.git/info/lfs/objects/batch",
            json.dumps(batch).encode(),
            **{"Content-Type": LFS_MEDIA, "Accept": LFS_MEDIA},
        )
        if status != 200:
            raise BenchError(f"LFS batch {operation} answered {status}: {body[:300]!r}")
        return json.loads(body)["objects"][0]["actions"]

    def _api(self, tally: Tally) -> None:
        for path in (
            f"/api/models/{USER}/{self.repo}",
            f"/{USER}/{self.repo}/resolve/main/src/file00.txt",
        ):
            status, body = self.hub.request("GET", path)
            if status != 200 or not body:
                raise BenchError(f"GET {path} answered {status}: {body[:300]!r}")
        tally.done += 1


def _follow(action: dict, method: str, body: bytes | None = None, headers=None) -> bytes:
    """One LFS action (``href`` and its ``header``); returns the answer's body."""
    request = urllib.request.Request(
        action["href"],
        data=body,
        method=method,
        headers={**action.get("header", {}), **(headers or {})},
    )
    with urllib.request.urlopen(request, timeout=120) as response:
        return response.read()


def run_clients(clients: Sequence[Client], seconds: float) -> dict[str, Tally]:
    tallies = {role: Tally() for role in ROLES}
    deadline = time.monotonic() + seconds
    guard = threading.Lock()

    def loop(client: Client) -> None:
        while time.monotonic() < deadline:
            own = Tally()
            try:
                client.step(own)
            except (BenchError, OSError, subprocess.SubprocessError) as error:
                own.failures.append(f"{client.role}: {error}")
            with guard:
                tally = tallies[client.role]
                tally.done += own.done
                tally.lost_races += own.lost_races
                tally.failures += own.failures

    threads = [threading.Thread(target=loop, args=(client,)) for client in clients]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return tallies


# Measuring one engine


@dataclass
class Outcome:
    engine: str
    tallies: dict[str, Tally]
    server_errors: int
    lost: list[str]
    fsck: list[str]
    idle_mib: float
    peak_mib: float
    end_mib: float
    #: The resident MiB of each process at the end: the master, then its workers.
    end_each: str


def run_engine(
    work: Path, engine: str, git: Git, source: Path, seconds: float, warmup: float
) -> Outcome:
    hub = start_hub(work, engine, git, source)
    try:
        numbers = iter(range(sum(ROLES.values())))
        clients = [
            Client(hub, work / engine, next(numbers), role)
            for role, count in ROLES.items()
            for _ in range(count)
        ]
        for client in clients:
            client.prepare()
        # Warm-up: the same load for a while (every worker thread has served, caches
        # are filled), then the idle level is read once the server has rested.
        warm = run_clients(clients, warmup)
        failures = [failure for tally in warm.values() for failure in tally.failures]
        if failures:
            raise BenchError(f"during warm-up: {failures[0]}")
        idle, _ = rested_usage(hub.process.process.pid)
        peak = [idle]
        done = threading.Event()

        def sample() -> None:
            while not done.is_set():
                peak[0] = max(peak[0], tree_usage(hub.process.process.pid)[0])
                done.wait(0.1)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        print(f"  {engine}: {len(clients)} clients for {seconds:.0f} s ...", flush=True)
        tallies = run_clients(clients, seconds)
        done.set()
        sampler.join()
        end, each = rested_usage(hub.process.process.pid)
        log = hub.process.log.read_text(errors="replace")
        server_errors = len(SERVER_ERROR.findall(log))
        lost = [
            f"{repo} {sha}"
            for repo, shas in hub.landed.items()
            for sha in shas
            if not _in_history(git, hub.paths[repo], sha)
        ]
        fsck = []
        for repo, path in hub.paths.items():
            result = subprocess.run(
                ["git", "--git-dir", str(path), "fsck", "--no-progress", "--no-dangling"],
                capture_output=True,
                env=git.env,
            )
            if result.returncode != 0:
                fsck.append(f"{repo}: {result.stderr.decode(errors='replace')[-500:]}")
        return Outcome(engine, tallies, server_errors, lost, fsck, idle, peak[0], end, each)
    finally:
        hub.process.stop()


def rested_usage(root: int, rest: float = 5, longest: float = 60) -> tuple[float, str]:
    """The tree's resident MiB once the load is over, ``rest`` seconds after the last git
    child (a background repack after the last pushes) has exited, and each process's."""
    deadline = time.monotonic() + longest
    while len(tree_pids(root)) > 1 + WORKERS and time.monotonic() < deadline:
        time.sleep(0.5)
    time.sleep(rest)
    each = " + ".join(f"{rss_mib(pid):.0f}" for pid in tree_pids(root))
    return tree_usage(root)[0], each


def _in_history(git: Git, path: Path, sha: str) -> bool:
    command = ["git", "--git-dir", str(path), "merge-base", "--is-ancestor", sha, "main"]
    return subprocess.run(command, capture_output=True, env=git.env).returncode == 0


def report(outcome: Outcome) -> list[str]:
    lines = [f"engine {outcome.engine}:"]
    failed = 0
    for role, tally in outcome.tallies.items():
        failed += len(tally.failures)
        extra = f", {tally.lost_races} lost races (rejected, expected)" if role == "push" else ""
        lines.append(f"  {role:<6} {tally.done:>5} done, {len(tally.failures)} failed{extra}")
        for failure in Counter(tally.failures).most_common(3):
            lines.append(f"         {failure[1]} x {failure[0][:300]}")
    lines.append(f"  HTTP 5xx in the server's log: {outcome.server_errors}")
    lines.append(f"  accepted pushes not in main's history: {len(outcome.lost)}")
    lines.append(f"  git fsck of the server's repositories: {'; '.join(outcome.fsck) or 'clean'}")
    ratio = outcome.end_mib / outcome.idle_mib
    lines.append(
        f"  server tree RSS MiB: idle {outcome.idle_mib:.0f}, peak {outcome.peak_mib:.0f}, "
        f"after {outcome.end_mib:.0f} ({ratio:.2f}x idle; {outcome.end_each})"
    )
    met = not failed and not outcome.server_errors and not outcome.lost and not outcome.fsck
    lines.append(f"  goal: no failed operation, nothing lost: {'met' if met else 'NOT met'}")
    lines.append(
        f"  goal: memory back within {MEMORY_GOAL}x idle: "
        + ("met" if ratio <= MEMORY_GOAL else "NOT met")
    )
    return lines


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=180, help="load per engine")
    parser.add_argument("--warmup", type=float, default=30, help="load before idle is read")
    parser.add_argument(
        "--engines", nargs="+", choices=("git", "dulwich"), default=["git", "dulwich"]
    )
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="hfgit-mixed-"))
    load_before = load_average()
    started = time.perf_counter()
    git = Git(work / "home")
    source = work / "source.git"
    git.import_bare(source, history_stream(200, files=300))
    lines: list[str] = []
    try:
        for engine in args.engines:
            outcome = run_engine(work, engine, git, source, args.seconds, args.warmup)
            lines += report(outcome)
    except BenchError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        print(f"work directory kept for inspection: {work}", file=sys.stderr)
        return 1
    roles = ", ".join(f"{count} {role}" for role, count in ROLES.items())
    print("\n".join(["", *machine_facts(), f"nproc: {os.cpu_count()}", f"clients: {roles}", ""]))
    print("\n".join(lines))
    print("\n" + closing_line(started, load_before))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
