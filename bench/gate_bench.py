"""How much does the gatekeeper cost? Real git against three servers, plus the auth path.

One run measures, on 127.0.0.1 with free ports:

* ``git clone``, a no-op ``git fetch`` and a ``git push`` (whole history into an empty
  repository) of a 200-commit repository and of a repository holding one 30 MB file,
  through

  1. **gate**: ``hfgit serve`` (gunicorn gthread, 2 workers x 8 threads) with a private
     repository and a write token; git gets the token from a throwaway credential
     helper reading an environment variable, so it first gets a 401 and retries, as
     it does against any authenticated server;
  2. **dulwich**: raw ``dulwich.web`` (``make_wsgi_chain``, no authentication) under the
     same gunicorn worker class and counts, so the difference is the gate itself;
  3. **http-backend**: ``git http-backend`` as CGI behind a small stdlib HTTP server
     (``bench/_cgi_server.py``), the reference "plain git" server. It speaks protocol
     v2, which git 2.39 asks for; dulwich (and so the gate) answers v0/v1.

  Clone and fetch also run anonymously against a public copy on the gate
  (**gate-anon**): the gap between gate and gate-anon is what the token costs. The
  gate runs with ``HFGIT_MAX_BLOB_BYTES`` raised so the 30 MB file is accepted over git
  (by default hfgit sends files over 10 MiB to Git LFS). Every clone and push is
  checked: the ``main`` it leaves must be the source's.

* the auth decision cost in-process, on a database of 10,000 tokens and 1,000 repos:
  ``Gate.caller`` + ``Gate.check`` on a realistic environ, and a whole
  ``GET info/refs?service=git-upload-pack`` through the WSGI app with werkzeug's test
  client (with a token, and anonymously on a public repo), next to the same request
  through raw dulwich in the same round.

It prints medians over ``--runs`` runs (after one warm-up) and the ratios against the
references measured in the same run, next to the goals: the gate adds at most 5% to a
clone over raw dulwich, and under 1 ms per request. No token is ever printed.

    .venv/bin/python bench/gate_bench.py            # full run, about 3 minutes on 2 cores
    .venv/bin/python bench/gate_bench.py --quick    # smoke run, well under a minute
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import platform
import random
import secrets
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from importlib.metadata import version
from pathlib import Path

import sqlalchemy as sa
from dulwich.web import make_wsgi_chain
from werkzeug.test import Client, EnvironBuilder

from hfgit import tokens
from hfgit.accounts import Accounts
from hfgit.config import MiB, Settings
from hfgit.names import RepoId
from hfgit.policy import Action
from hfgit.server import create_app
from hfgit.server.gate import Gate
from hfgit.store import accounts as accounts_table
from hfgit.store import memberships, repos
from hfgit.store import tokens as tokens_table

BENCH_DIR = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH_DIR))
from _dulwich_app import RootBackend  # noqa: E402
from support import (  # noqa: E402
    TOKEN_ENV,
    USER,
    BenchError,
    Git,
    ServerProcess,
    bigfiles_stream,
    free_port,
    history_stream,
    load_average,
    raw_dulwich_server,
)

SERVERS = ("gate", "dulwich", "http-backend")
#: The gate again, on a public copy of each repository, cloned and fetched anonymously:
#: the difference to "gate" is what the token costs (401, credential helper, lookup).
ANONYMOUS = "gate-anon"
OPERATIONS = ("clone", "fetch", "push")
WORKERS = 2
THREADS = 8  # hfgit serve's default (ServeOptions.threads)
CLONE_GOAL = 1.05
REQUEST_GOAL_US = 1000.0


# Helpers


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


# Servers


@dataclass
class Server:
    """One of the servers compared, and how to make a repository on it."""

    name: str
    process: ServerProcess
    new_repo: Callable[[str, bool], Path]
    #: repository name -> its bare directory on disk, for checking what a push left there.
    dirs: dict[str, Path] = field(default_factory=dict)

    def repo_url(self, repo: str) -> str:
        return f"{self.process.url}/{USER}/{repo}"

    def add_repo(self, repo: str, public: bool = False) -> Path:
        self.dirs[repo] = self.new_repo(repo, public)
        return self.dirs[repo]


def start_gate(work: Path, max_blob: int) -> tuple[Server, str]:
    """``hfgit serve`` on a fresh data dir; returns the server and a write token."""
    data_dir = work / "gate-data"
    settings = Settings.load(data_dir)
    accounts = Accounts.open(settings)
    accounts.users.create_user(USER)
    token, _ = accounts.tokens.create(USER, "bench", "write")

    def new_repo(repo: str, public: bool) -> Path:
        record = accounts.repos.create(
            RepoId(type="model", namespace=USER, name=repo), private=not public
        )
        return accounts.repos.path(record)

    port = free_port()
    command = [sys.executable, "-m", "hfgit.cli", "serve", "--data-dir", str(data_dir)]
    command += ["--port", str(port), "--workers", str(WORKERS)]
    # The default blob limit sends files over 10 MiB to Git LFS; this benchmark pushes
    # the large file through git itself, as it does to the other two servers.
    env = {"HFGIT_MAX_BLOB_BYTES": str(max_blob)}
    process = ServerProcess.start(command, port, work / "gate.log", env=env)
    return Server("gate", process, new_repo), token


def start_dulwich(work: Path, git: Git) -> Server:
    root = work / "dulwich-root"
    (root / USER).mkdir(parents=True)
    process = raw_dulwich_server(
        root, work / "dulwich.log", workers=WORKERS, threads=THREADS, timeout=120
    )
    return Server("dulwich", process, lambda repo, public: git.init_bare(root / USER / repo))


def start_http_backend(work: Path, git: Git) -> Server:
    root = work / "cgi-root"
    (root / USER).mkdir(parents=True)
    port = free_port()
    command = [sys.executable, str(BENCH_DIR / "_cgi_server.py"), "--port", str(port)]
    command += ["--root", str(root)]
    process = ServerProcess.start(command, port, work / "cgi.log", probe="/")
    return Server("http-backend", process, lambda repo, public: git.init_bare(root / USER / repo))


# Git operations


@dataclass
class Dataset:
    name: str
    label: str
    source: Path
    head: str


def bench_git(work: Path, runs: int, big_size: int, commits: int) -> tuple[dict, float]:
    """Clone, no-op fetch and push through each server; returns the seconds measured."""
    git = Git(work / "home")
    print(f"building sources: {commits} commits, one {big_size / MiB:.0f} MB file ...", flush=True)
    datasets = [
        Dataset("history", f"{commits} commits", work / "src-history.git", ""),
        Dataset("bigfile", f"{big_size / MiB:.0f} MB file", work / "src-bigfile.git", ""),
    ]
    datasets[0].head = git.import_bare(datasets[0].source, history_stream(commits))
    datasets[1].head = git.import_bare(datasets[1].source, bigfiles_stream(1, big_size))

    servers: list[Server] = []
    try:
        gate, token = start_gate(work, 2 * big_size)
        git.env[TOKEN_ENV] = token
        servers.append(gate)
        servers.append(start_dulwich(work, git))
        servers.append(start_http_backend(work, git))
        total = runs + 1  # the first run warms caches and is not counted
        for server in servers:
            for data in datasets:
                git.seed(data.source, server.add_repo(data.name))
                if server is gate:
                    git.seed(data.source, server.add_repo(f"{data.name}-public", True))
                for run in range(total):
                    server.add_repo(f"push-{data.name}-{run}")
        seconds = _measure(work, git, servers, datasets, total)
        return seconds, credential_cost(git, 20)
    finally:
        for server in servers:
            server.process.stop()


def _measure(work: Path, git: Git, servers: list[Server], datasets: list[Dataset], total: int):
    seconds: dict[tuple[str, str, str], list[float]] = {}
    # (label, server, suffix of the repository name) for clone and fetch.
    readers = [(s.name, s, "") for s in servers] + [(ANONYMOUS, servers[0], "-public")]
    fetch_clones: dict[tuple[str, str], Path] = {}
    for label, server, suffix in readers:
        for data in datasets:
            path = work / "fetch" / f"{label}-{data.name}"
            git.run("clone", "-q", "--no-checkout", server.repo_url(data.name + suffix), str(path))
            fetch_clones[label, data.name] = path

    for run in range(total):
        print("warm-up ..." if run == 0 else f"run {run}/{total - 1} ...", flush=True)
        # Rotate the order each run so no server always follows the same one.
        shift = run % len(readers)
        for data in datasets:
            for label, server, suffix in readers[shift:] + readers[:shift]:
                dest = work / "clones" / f"{label}-{data.name}-{run}"
                url = server.repo_url(data.name + suffix)
                spent = git.timed("clone", "-q", "--bare", url, str(dest))
                _expect(git.head(dest), data, f"clone from {label}")
                shutil.rmtree(dest)
                _record(seconds, run, (data.name, "clone", label), spent)
            for label, _, _ in readers[shift:] + readers[:shift]:
                clone = fetch_clones[label, data.name]
                spent = git.timed("-C", str(clone), "fetch", "-q", "origin")
                _record(seconds, run, (data.name, "fetch", label), spent)
            for server in servers[shift % len(servers) :] + servers[: shift % len(servers)]:
                target = f"push-{data.name}-{run}"
                spent = git.timed(
                    "--git-dir", str(data.source), "push", "-q", server.repo_url(target), "main"
                )
                _expect(git.head(server.dirs[target]), data, f"push to {server.name}")
                _record(seconds, run, (data.name, "push", server.name), spent)
    return seconds


def credential_cost(git: Git, count: int) -> float:
    """Median seconds git spends asking the throwaway helper (``git credential fill``)."""
    request = b"protocol=http\nhost=127.0.0.1\npath=bench/history\n\n"
    spent = []
    for _ in range(count):
        start = time.perf_counter()
        # The answer holds the token: it is checked, never printed.
        answer = git.run("credential", "fill", input=request).decode()
        spent.append(time.perf_counter() - start)
        if f"password={git.env[TOKEN_ENV]}" not in answer.splitlines():
            raise BenchError("the credential helper did not answer with the token")
    return statistics.median(spent)


def _expect(head: str, data: Dataset, what: str) -> None:
    if head != data.head:
        raise BenchError(f"{what}: main is {head}, expected {data.head} ({data.name})")


def _record(seconds: dict, run: int, key: tuple[str, str, str], spent: float) -> None:
    if run > 0:
        seconds.setdefault(key, []).append(spent)


def _cell(value: float | None, width: int, spec: str) -> str:
    return f"{value:>{width}{spec}}" if value is not None else f"{'-':>{width}}"


def report_git(
    seconds: dict, datasets: Sequence[tuple[str, str]], runs: int, helper: float
) -> list[str]:
    lines = [
        f"Git over HTTP on 127.0.0.1: median seconds of {runs} run(s), after one warm-up",
        f"gate and dulwich: gunicorn gthread, {WORKERS} workers x {THREADS} threads each; "
        "http-backend: CGI under bench/_cgi_server.py;",
        f"{ANONYMOUS}: the gate on a public copy, no token (clone and fetch only)",
        "",
        f"{'repository':<14}{'operation':<10}{'gate':>8}{ANONYMOUS:>10}{'dulwich':>9}"
        f"{'http-b.':>9}{'gate/dulwich':>14}{'anon/dulwich':>14}{'gate/http-b.':>14}",
    ]
    clone_ratios = []
    for name, label in datasets:
        for op in OPERATIONS:
            gate, raw, cgi = (statistics.median(seconds[name, op, s]) for s in SERVERS)
            anon = seconds.get((name, op, ANONYMOUS))
            anon_median = statistics.median(anon) if anon else None
            lines.append(
                f"{label:<14}{op:<10}{gate:>8.3f}{_cell(anon_median, 10, '.3f')}{raw:>9.3f}"
                f"{cgi:>9.3f}{gate / raw:>14.2f}"
                f"{_cell(anon_median and anon_median / raw, 14, '.2f')}{gate / cgi:>14.2f}"
            )
            if op == "clone":
                clone_ratios.append((name, label, gate / raw))
    lines.append("")
    for name, label, ratio in clone_ratios:
        verdict = "met" if ratio <= CLONE_GOAL else "NOT met"
        # Gate and dulwich run back to back in each run: their per-run ratio cancels
        # load that drifts between runs (other work on a shared machine).
        pairs = zip(seconds[name, "clone", "gate"], seconds[name, "clone", "dulwich"], strict=True)
        paired = [g / d for g, d in pairs]
        lines.append(
            f"goal: clone through the gate <= {CLONE_GOAL:.2f} x raw dulwich ({label}): "
            f"{ratio:.3f} -> {verdict}; per-run ratios {' '.join(f'{r:.2f}' for r in paired)}"
        )
    lines += [
        "notes: with a token, git's first request gets a 401 and git asks the credential "
        "helper, then retries;",
        f"  that helper call alone (git credential fill) takes {helper * 1000:.1f} ms "
        "(median of 20).",
        "  http-backend answers protocol v2 (git 2.39's default); dulwich and the gate answer v0.",
    ]
    return lines


# Auth decision cost


@dataclass
class Probe:
    """One realistic request: a token that may read one repository."""

    secret: str
    repo_id: RepoId
    storage_id: str


def populate(
    accounts: Accounts, *, users: int, orgs: int, repo_count: int, token_count: int
) -> list[tuple[str, str, int]]:
    """Bulk-insert accounts, memberships, repos and tokens; returns (secret, owner, id)s.

    Rows are written with SQL in a few statements: creating 10,000 tokens one by one
    through :meth:`Accounts.create_token` would take minutes.
    """
    now = time.time()
    rng = random.Random(5)
    user_names = [f"user{i:04d}" for i in range(users)]
    org_names = [f"org{i:03d}" for i in range(orgs)]
    with accounts.store.begin() as conn:
        conn.execute(
            accounts_table.insert(),
            [
                {
                    "hub_id": secrets.token_hex(12),
                    "kind": kind,
                    "name": name,
                    "name_lower": name,
                    "fullname": name,
                    "created_at": now,
                }
                for kind, group in (("user", user_names), ("org", org_names))
                for name in group
            ],
        )
        ids = dict(conn.execute(sa.select(accounts_table.c.name, accounts_table.c.id)).all())
        roles = ("read", "contributor", "write", "admin")
        member_rows = {
            (ids[org_names[(i * k + k) % orgs]], ids[user]): roles[(i + k) % 4]
            for i, user in enumerate(user_names)
            for k in (1, 7)
        }
        conn.execute(
            memberships.insert(),
            [{"org_id": o, "user_id": u, "role": r} for (o, u), r in member_rows.items()],
        )
        repo_rows = []
        for i in range(repo_count):
            on_user = i % 2 == 0
            namespace = user_names[(i // 2) % users] if on_user else org_names[i % orgs]
            repo_rows.append(
                {
                    "hub_id": secrets.token_hex(12),
                    "type": ("model", "model", "model", "dataset", "space")[i % 5],
                    "namespace_id": ids[namespace],
                    "name": f"repo{i:04d}",
                    "name_lower": f"repo{i:04d}",
                    "private": i % 3 != 0,
                    "gated": "auto" if i % 3 == 0 and i % 10 == 3 else "off",
                    "creator_id": ids[namespace] if on_user else ids[rng.choice(user_names)],
                    "storage_id": uuid.uuid4().hex,
                    "created_at": now,
                }
            )
        conn.execute(repos.insert(), repo_rows)
        token_rows, secrets_out = [], []
        per_user = token_count // users
        for user in user_names:
            for k in range(per_user):
                secret = tokens.generate()
                role = ("write", "write", "write", "read", "read", "fineGrained")[k % 6]
                scopes = (
                    [{"type": "user", "name": user, "permissions": ["repo.content.read"]}]
                    if role == "fineGrained"
                    else []
                )
                token_rows.append(
                    {
                        "owner_id": ids[user],
                        "display_name": f"token{k}",
                        "role": role,
                        "scopes": scopes,
                        "can_read_gated": False,
                        "digest": tokens.digest(secret, accounts.token_key),
                        "last4": tokens.last4(secret),
                        "created_at": now,
                        "expires_at": now + 86400 * 30 if k % 4 == 0 else None,
                    }
                )
                secrets_out.append((secret, user, ids[user]))
        conn.execute(tokens_table.insert(), token_rows)
    return secrets_out


def pick_probes(accounts: Accounts, secrets_out, count: int) -> list[Probe]:
    """Token and repository pairs that are allowed to fetch: the common, successful path."""
    by_owner: dict[str, list[str]] = {}
    for secret, user, _ in secrets_out:
        by_owner.setdefault(user, []).append(secret)
    gate = Gate(accounts)
    rng = random.Random(7)
    probes: list[Probe] = []
    records = accounts.repos.list()
    for record in rng.sample(records, k=len(records)):
        if len(probes) >= count:
            break
        facts = record.facts
        secret = rng.choice(by_owner[facts.creator if facts.namespace_is_org else facts.namespace])
        environ = _environ(f"/{record.repo_id.url_path}/info/refs", secret)
        caller = gate.caller(environ)
        if gate.check(caller, record.repo_id, Action.READ).decision:
            probes.append(Probe(secret, record.repo_id, record.storage_id))
    with accounts.store.begin() as conn:
        # Picking used the tokens: make the measured first use a real first use again.
        conn.execute(tokens_table.update().values(last_used_at=None))
    return probes


def _environ(path: str, secret: str) -> dict:
    basic = base64.b64encode(f"{USER}:{secret}".encode()).decode()
    builder = EnvironBuilder(
        path=path,
        query_string={"service": "git-upload-pack"},
        headers={"Authorization": f"Basic {basic}", "User-Agent": "git/2.39.5"},
    )
    return builder.get_environ()


def bench_auth(work: Path, iterations: int, source: Path, git: Git) -> list[str]:
    data_dir = work / "auth-data"
    settings = Settings.load(data_dir)
    accounts = Accounts.open(settings)
    started = time.perf_counter()
    secrets_out = populate(accounts, users=1000, orgs=100, repo_count=1000, token_count=10_000)
    with accounts.store.begin() as conn:
        counts = {
            name: conn.execute(sa.select(sa.func.count()).select_from(table)).scalar()
            for name, table in (("tokens", tokens_table), ("repos", repos))
        }
    print(
        f"auth database: {counts['tokens']} tokens, {counts['repos']} repos "
        f"(created in {time.perf_counter() - started:.1f} s)",
        flush=True,
    )
    probes = pick_probes(accounts, secrets_out, 100)
    if len(probes) < 50:
        raise BenchError(f"only {len(probes)} allowed (token, repo) pairs found")
    public = [r for r in accounts.repos.list() if not r.facts.private and r.facts.gated == "off"][
        :20
    ]
    for storage_id in {p.storage_id for p in probes} | {r.storage_id for r in public}:
        # A real repository behind each one, so info/refs advertises real refs.
        git.run("clone", "-q", "--bare", str(source), str(settings.repos_dir / f"{storage_id}.git"))
    gate = Gate(accounts)
    environs = [_environ(f"/{p.repo_id.url_path}/info/refs", p.secret) for p in probes]

    def decide(i: int) -> tuple[float, float]:
        probe, environ = probes[i % len(probes)], environs[i % len(environs)]
        t0 = time.perf_counter_ns()
        caller = gate.caller(environ)
        t1 = time.perf_counter_ns()
        access = gate.check(caller, probe.repo_id, Action.READ)
        t2 = time.perf_counter_ns()
        if not access.decision:
            raise BenchError(f"{probe.repo_id} unexpectedly denied: {access.decision}")
        return (t1 - t0) / 1000, (t2 - t1) / 1000

    # First use of each token: also writes "last used" and an audit row.
    first = [sum(decide(i)) for i in range(len(probes))]
    steady = [decide(i) for i in range(iterations)]

    app_client = Client(create_app(settings, accounts))
    raw_client = Client(make_wsgi_chain(RootBackend(settings.repos_dir)))
    query = {"service": "git-upload-pack"}

    def fetch(client: Client, path: str, headers: dict | None = None) -> tuple[float, bytes]:
        t0 = time.perf_counter_ns()
        answer = client.get(path, query_string=query, headers=headers)
        spent = (time.perf_counter_ns() - t0) / 1000
        if answer.status_code != 200:
            raise BenchError(f"GET {path}/info/refs answered {answer.status_code}")
        return spent, answer.data

    # gate with a token, gate anonymous on a public repo, raw dulwich: one of each per
    # round, so all three see the same load; the first tenth warms caches up.
    token_us, anon_us, raw_us = [], [], []
    warm_up = iterations // 10
    for i in range(warm_up + iterations):
        probe, repo = probes[i % len(probes)], public[i % len(public)]
        headers = {"Authorization": environs[i % len(environs)]["HTTP_AUTHORIZATION"]}
        gate_spent, gate_body = fetch(app_client, f"/{probe.repo_id.url_path}/info/refs", headers)
        anon_spent, _ = fetch(app_client, f"/{repo.repo_id.url_path}/info/refs")
        raw_spent, raw_body = fetch(raw_client, f"/{probe.storage_id}.git/info/refs")
        if gate_body != raw_body:
            raise BenchError("info/refs: the gate and dulwich advertise different refs")
        if i >= warm_up:
            token_us.append(gate_spent)
            anon_us.append(anon_spent)
            raw_us.append(raw_spent)
    accounts.store.dispose()

    def row(label: str, values: Sequence[float]) -> str:
        return f"{label:<52}{statistics.median(values):>10.0f}{percentile(values, 0.95):>10.0f}"

    # Per-round differences: each pair ran back to back, under the same load.
    added = statistics.median(g - r for g, r in zip(token_us, raw_us, strict=True))
    added_anon = statistics.median(a - r for a, r in zip(anon_us, raw_us, strict=True))
    decision = statistics.median([c + k for c, k in steady])
    verdict = "met" if max(added, decision) < REQUEST_GOAL_US else "NOT met"
    lines = [
        f"Auth decision cost in-process ({counts['tokens']} tokens, {counts['repos']} repos, "
        f"SQLite; {iterations} requests over {len(probes)} token/repo pairs)",
        "",
        f"{'microseconds per request':<52}{'median':>10}{'p95':>10}",
        row("Gate.caller (token lookup)", [c for c, _ in steady]),
        row("Gate.check (repo lookup + policy)", [k for _, k in steady]),
        row("Gate.caller + Gate.check", [c + k for c, k in steady]),
        row("  same, first use of a token (writes last-used)", first),
        row("GET info/refs, hfgit, token, private repo", token_us),
        row("GET info/refs, hfgit, anonymous, public repo", anon_us),
        row("GET info/refs, raw dulwich", raw_us),
        row(
            "  hfgit with token - raw dulwich (same round)",
            [g - r for g, r in zip(token_us, raw_us, strict=True)],
        ),
        row(
            "  hfgit anonymous - raw dulwich (same round)",
            [a - r for a, r in zip(anon_us, raw_us, strict=True)],
        ),
        "",
        f"goal: the gate adds < {REQUEST_GOAL_US:.0f} us per request: "
        f"info/refs with token - dulwich = {added:.0f} us (anonymous: {added_anon:.0f} us), "
        f"caller + check = {decision:.0f} us -> {verdict}",
    ]
    return lines


# Entry point


def machine_facts() -> list[str]:
    cpu = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    git_version = subprocess.run(["git", "--version"], capture_output=True, text=True).stdout
    # The benchmark measures the checkout as it is: name its commit and whether it is dirty.
    describe = subprocess.run(
        ["git", "-C", str(BENCH_DIR), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    return [
        f"machine: {cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}",
        f"software: Python {platform.python_version()}, {git_version.strip()}, "
        f"dulwich {version('dulwich')}, gunicorn {version('gunicorn')}, "
        f"SQLAlchemy {version('sqlalchemy')}, SQLite {sqlite3.sqlite_version}",
        f"hfgit: {version('hfgit')} at {describe or 'unknown commit'}",
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5, help="measured runs per case (default 5)")
    parser.add_argument(
        "--quick", action="store_true", help="smoke run: 1 run, a 5 MB file, fewer requests"
    )
    parser.add_argument("--part", choices=("all", "git", "auth"), default="all")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    parser.add_argument("--json", type=Path, help="also write the raw timings here")
    args = parser.parse_args(argv)
    if shutil.which("git") is None:
        raise SystemExit("needs git: apt-get install -y git")
    runs = 1 if args.quick else args.runs
    if runs < 1:
        parser.error("--runs must be at least 1")
    big_size = (5 if args.quick else 30) * MiB
    commits = 200
    iterations = 300 if args.quick else 3000

    work = Path(tempfile.mkdtemp(prefix="hfgit-bench-"))
    output = ["", *machine_facts(), ""]
    load_before = load_average(windows=1, digits=1)
    raw: dict = {}
    started = time.perf_counter()
    try:
        if args.part in ("all", "git"):
            seconds, helper = bench_git(work, runs, big_size, commits)
            raw["git_seconds"] = {"/".join(k): v for k, v in seconds.items()}
            datasets = [
                ("history", f"{commits} commits"),
                ("bigfile", f"{big_size // MiB} MB file"),
            ]
            output += [*report_git(seconds, datasets, runs, helper), ""]
        if args.part in ("all", "auth"):
            git = Git(work / "home")
            source = work / "src-auth.git"
            git.import_bare(source, history_stream(commits))
            output += bench_auth(work, iterations, source, git)
    except BenchError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        print(f"work directory kept for inspection: {work}", file=sys.stderr)
        return 1
    output.append(
        f"\ntotal time: {time.perf_counter() - started:.0f} s; load average before "
        f"{load_before}, after {load_average(windows=1, digits=1)}"
    )
    print("\n".join(output))
    if args.json:
        args.json.write_text(json.dumps(raw, indent=1))
    if args.keep:
        print(f"work directory kept: {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
