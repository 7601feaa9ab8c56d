"""hfgit's two fetch engines against C git's own server and raw dulwich, in one run.

Four servers on 127.0.0.1, the same repositories on each, the real git as client:

* **git**: ``hfgit serve --engine git``, the full gate, private repositories, a write
  token (from a throwaway credential helper, so each operation first gets a 401);
* **dulwich**: ``hfgit serve --engine dulwich``, the same;
* **http-backend**: ``git http-backend`` as CGI behind lighttpd, the reference a team
  would otherwise deploy (no authentication, push enabled);
* **http-backend+auth**: the same behind lighttpd's HTTP Basic authentication (a
  password file), what a team would deploy for private repositories: its clients get
  the same 401 and credential-helper round trip as hfgit's;
* **raw-dulwich**: ``dulwich.web`` under gunicorn (``bench/_dulwich_app.py``), no gate.

hfgit runs its default worker (``front``), raw dulwich gunicorn's gthread, with the same
worker and thread counts.
Repositories are built by ``git fast-import`` from seeded generators: small (200
commits, 300 files), medium (5,000 commits, 3,000 files) and big-blob (125 MB of random
bytes in 4 files). Workloads: bare clone, ``--single-branch --no-checkout``, fetch of 1
and of 100 new commits, no-op fetch, ls-remote, ``--depth 1``, push of 50 commits and of
a 30 MB file, 8 parallel clones; fetches in protocol v0 and v2 (``git -c
protocol.version=N``; pushes are v0 whatever is asked).

Each cell runs every server once per run, interleaved, the order reversed every other
run; it reports the median wall time, its ratio to http-backend and to
http-backend+auth, the server's CPU
seconds (the whole process tree, git children included) and its peak resident memory
(the tree summed, sampled every 20 ms) and the growth of that peak over the tree's
resident memory just before. Every clone and push is checked against the source.
Every server's repositories start as one pack (without a bitmap), as hfgit's own
receive-pack stores a push: the same objects in the same layout for all.

    .venv/bin/python bench/engines.py            # everything, 5 runs: long on 2 cores
    .venv/bin/python bench/engines.py --quick    # small + medium, fewer workloads, 3 runs

lighttpd comes from Debian: the benchmark installs it with apt-get when it is missing
and it may (root), else says what to install. The tests never need it.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from gate_bench import machine_facts
from support import (
    USER,
    BenchError,
    Git,
    ServerProcess,
    bigfiles_stream,
    closing_line,
    free_port,
    history_stream,
    load_average,
    raw_dulwich_server,
    tree_usage,
)

from hfgit.accounts import Accounts
from hfgit.config import MiB, Settings
from hfgit.names import RepoId

BENCH_DIR = Path(__file__).resolve().parent
SERVERS = ("git", "dulwich", "http-backend", "http-backend+auth", "raw-dulwich")
REFERENCE = "http-backend"
#: The like-for-like reference: C git's server behind a password, so its clients too
#: get a 401 first and ask their credential helper, as every hfgit client does.
AUTH_REFERENCE = "http-backend+auth"
WORKERS = 2
THREADS = 8  # hfgit serve's default
PUSH_FILE = 30 * MiB
PARALLEL = 8
RATIO_GOAL = 1.2
GROWTH_GOAL_MIB = 150.0


# Repositories


@dataclass
class Dataset:
    name: str
    label: str
    stream: Callable[[], bytes]
    source: Path | None = None
    head: str = ""


DATASETS = {
    "small": Dataset("small", "200 commits / 300 files", lambda: history_stream(200, files=300)),
    "medium": Dataset(
        "medium", "5,000 commits / 3,000 files", lambda: history_stream(5000, files=3000)
    ),
    "big": Dataset("big", "125 MB in 4 random files", lambda: bigfiles_stream(4, 125 * 10**6 // 4)),
}


# Servers


@dataclass
class Server:
    name: str
    process: ServerProcess
    prefix: str
    new_repo: Callable[[str], Path]
    #: The client git for this server: each hfgit has its own token.
    git: Git
    dirs: dict[str, Path] = field(default_factory=dict)

    def url(self, repo: str) -> str:
        return f"{self.process.url}{self.prefix}/{USER}/{repo}"

    def add_repo(self, repo: str) -> Path:
        self.dirs[repo] = self.new_repo(repo)
        return self.dirs[repo]

    def usage(self) -> tuple[float, float]:
        return tree_usage(self.process.process.pid)


def start_hfgit(work: Path, engine: str) -> Server:
    """``hfgit serve --engine ENGINE`` on its own data dir, and a client with a write token."""
    data_dir = work / f"hfgit-{engine}"
    accounts = Accounts.open(Settings.load(data_dir))
    accounts.users.create_user(USER)
    token, _ = accounts.tokens.create(USER, "bench", "write")

    def new_repo(repo: str) -> Path:
        record = accounts.repos.create(
            RepoId(type="model", namespace=USER, name=repo), private=True
        )
        return accounts.repos.path(record)

    port = free_port()
    command = [sys.executable, "-m", "hfgit.cli", "serve", "--data-dir", str(data_dir)]
    command += ["--port", str(port), "--workers", str(WORKERS), "--engine", engine]
    # Over 10 MiB hfgit sends files to Git LFS by default; here the 30 MB file and the
    # 31 MB blobs go through git, as they do to the other servers.
    env = {"HFGIT_MAX_BLOB_BYTES": str(64 * MiB), "HFGIT_MAX_OBJECT_BYTES": str(64 * MiB)}
    process = ServerProcess.start(command, port, work / f"hfgit-{engine}.log", env=env)
    return Server(engine, process, "", new_repo, Git(work / "home", token))


def start_raw_dulwich(work: Path, git: Git) -> Server:
    root = work / "raw-dulwich"
    (root / USER).mkdir(parents=True)
    process = raw_dulwich_server(
        root, work / "raw-dulwich.log", workers=WORKERS, threads=THREADS, timeout=600
    )
    return Server("raw-dulwich", process, "", lambda repo: git.init_bare(root / USER / repo), git)


def lighttpd() -> str:
    """The lighttpd binary, installed from Debian when missing and we are root."""
    found = shutil.which("lighttpd") or shutil.which("lighttpd", path="/usr/sbin")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing lighttpd (apt-get install -y lighttpd) ...", flush=True)
        subprocess.run(["apt-get", "install", "-y", "-q", "lighttpd"], check=False)
        found = shutil.which("lighttpd", path="/usr/sbin:/usr/bin")
    if found is None:
        raise SystemExit(
            "needs lighttpd for the http-backend reference: apt-get install -y lighttpd"
        )
    return found


def start_http_backend(work: Path, git: Git, *, password: str | None = None) -> Server:
    """``git http-backend`` as CGI under lighttpd, push allowed.

    Responses stream (``stream-response-body = 2``); request bodies are spooled to a
    file first (``stream-request-body = 0``), because a CGI needs ``CONTENT_LENGTH``
    and git sends large pushes chunked: streaming them answers 411. With ``password``,
    lighttpd asks for HTTP Basic authentication as ``USER`` (``mod_auth``, a plain
    password file readable by nobody else); ``git`` must then be a client with it.
    """
    name = REFERENCE if password is None else AUTH_REFERENCE
    base = work / name
    root = base / "root"
    (root / USER).mkdir(parents=True)
    backend = subprocess.run(
        ["git", "--exec-path"], capture_output=True, text=True, check=True
    ).stdout.strip()
    port = free_port()
    modules = '"mod_alias", "mod_cgi", "mod_setenv"'
    auth = ""
    if password is not None:
        users = base / "users"
        users.touch(mode=0o600)
        users.write_text(f"{USER}:{password}\n")
        modules += ', "mod_auth", "mod_authn_file"'
        auth = f"""auth.backend = "plain"
auth.backend.plain.userfile = "{users}"
auth.require = ("/git" => ("method" => "basic", "realm" => "git", "require" => "valid-user"))
"""
    config = base / "lighttpd.conf"
    config.write_text(
        f"""server.modules = ({modules})
server.bind = "127.0.0.1"
server.port = {port}
server.document-root = "{root}"
server.errorlog = "{base / "error.log"}"
server.upload-dirs = ("{base}")
server.max-request-size = 0
server.stream-request-body = 0
server.stream-response-body = 2
alias.url = ("/git" => "{backend}/git-http-backend")
$HTTP["url"] =~ "^/git" {{
  cgi.assign = ("" => "")
  setenv.add-environment = ("GIT_PROJECT_ROOT" => "{root}", "GIT_HTTP_EXPORT_ALL" => "1")
}}
{auth}"""
    )
    command = [lighttpd(), "-D", "-f", str(config)]
    process = ServerProcess.start(command, port, base / "lighttpd.log", probe="/")

    def new_repo(repo: str) -> Path:
        path = git.init_bare(root / USER / repo)
        git.run("--git-dir", str(path), "config", "http.receivepack", "true")
        return path

    return Server(name, process, "/git", new_repo, git)


# Measuring


@dataclass
class Sample:
    seconds: float
    cpu: float
    peak_mib: float
    growth_mib: float


def measure(server: Server, action: Callable[[], None]) -> Sample:
    """Run ``action`` while sampling the server's process tree every 20 ms."""
    before_rss, before_cpu = server.usage()
    done = threading.Event()
    peak = [before_rss]

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], server.usage()[0])
            done.wait(0.02)

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    start = time.perf_counter()
    try:
        action()
    finally:
        spent = time.perf_counter() - start
        done.set()
        thread.join()
    after_rss, after_cpu = server.usage()
    peak[0] = max(peak[0], after_rss)
    return Sample(spent, after_cpu - before_cpu, peak[0], peak[0] - before_rss)


@dataclass
class Bench:
    work: Path
    git: Git
    servers: list[Server]
    runs: int
    results: dict[tuple[str, str, str, str], list[Sample]] = field(default_factory=dict)
    counter: int = 0

    def scratch(self) -> Path:
        self.counter += 1
        return self.work / "scratch" / str(self.counter)

    def cell(self, data: Dataset, workload: str, protocol: str, make: Callable) -> None:
        """``make(server, run)`` prepares one run (untimed) and returns what to time."""
        print(f"  {data.name} {workload} {protocol} ...", flush=True)
        config = ["-c", f"protocol.version={protocol[1]}"] if protocol != "-" else []
        for run in range(self.runs):
            order = self.servers if run % 2 == 0 else self.servers[::-1]
            for server in order:
                action, check = make(server, run, config)
                sample = measure(server, action)
                check()
                self.results.setdefault((data.name, workload, protocol, server.name), [])
                self.results[data.name, workload, protocol, server.name].append(sample)
        shutil.rmtree(self.work / "scratch", ignore_errors=True)
        # Each cell as it completes: a run cut short still leaves its numbers.
        key = (data.name, workload, protocol)
        medians = (
            f"{name} {statistics.median(s.seconds for s in self.results[(*key, name)]):.3f} s"
            for name in SERVERS
        )
        print("    " + ", ".join(medians), flush=True)

    def expect(self, git_dir: Path, head: str, what: str) -> Callable[[], None]:
        def check() -> None:
            found = self.git.head(git_dir)
            if found != head:
                raise BenchError(f"{what}: main is {found}, expected {head}")

        return check


def seed(git: Git, source: Path, target: Path, ref: str = "main") -> None:
    """Put ``source``'s ``ref`` into ``target`` as ``main``, in one pack.

    A local push of fewer than 100 objects would otherwise leave them loose (git's
    ``receive.unpackLimit``): the big repository's four blobs would then be inflated
    and deflated again on every clone, which no server does with a pushed pack. (A
    ``-c`` before ``push`` would not reach the local receive-pack: git clears the
    configuration it passes on before it runs one.)
    """
    receive = "--receive-pack=git -c receive.unpackLimit=1 receive-pack"
    git.run("--git-dir", str(source), "push", "-q", receive, str(target), f"{ref}:refs/heads/main")


def run_workloads(bench: Bench, data: Dataset, workloads: Sequence[str], protocols) -> None:
    git, source = bench.git, data.source
    repo = f"{data.name}-repo"
    for server in bench.servers:
        seed(git, source, server.add_repo(repo))

    def nothing() -> None:
        pass

    def clone(*flags: str) -> Callable:
        def make(server: Server, run: int, config: list[str]):
            dest = bench.scratch()
            bare = "--no-checkout" not in flags
            check_dir = dest if bare else dest / ".git"
            return (
                lambda: server.git.run(*config, "clone", "-q", *flags, server.url(repo), str(dest)),
                (bench.expect(check_dir, data.head, f"clone from {server.name}")),
            )

        return make

    def fetch(behind: int) -> Callable:
        base = bench.work / f"{data.name}-behind-{behind}.git"
        if not base.exists():
            git.init_bare(base)
            seed(git, source, base, f"main~{behind}" if behind else "main")

        def make(server: Server, run: int, config: list[str]):
            dest = bench.scratch()
            git.run("clone", "-q", "--bare", "--local", str(base), str(dest))
            command = [*config, "--git-dir", str(dest), "fetch", "-q", server.url(repo)]
            command.append("main:refs/heads/main")
            return lambda: server.git.run(*command), bench.expect(dest, data.head, "fetch")

        return make

    def ls_remote(server: Server, run: int, config: list[str]):
        return lambda: server.git.run(*config, "ls-remote", server.url(repo)), nothing

    def push50(server: Server, run: int, config: list[str]):
        target = f"{data.name}-push50-{run}-{bench.counter}"
        bench.counter += 1
        seed(git, source, server.add_repo(target), "main~50")
        command = ["--git-dir", str(source), "push", "-q", server.url(target), "main"]
        return lambda: server.git.run(*command), bench.expect(
            server.dirs[target], data.head, "push"
        )

    def push_file(server: Server, run: int, config: list[str]):
        target = f"{data.name}-pushfile-{run}-{bench.counter}"
        bench.counter += 1
        server.add_repo(target)
        big = bench.work / "push-file.git"
        big_head = git.head(big)
        command = ["--git-dir", str(big), "push", "-q", server.url(target), "main"]
        return lambda: server.git.run(*command), bench.expect(server.dirs[target], big_head, "push")

    def parallel(server: Server, run: int, config: list[str]):
        dests = [bench.scratch() for _ in range(PARALLEL)]

        def action() -> None:
            def one(dest: Path) -> bytes:
                return server.git.run(*config, "clone", "-q", "--bare", server.url(repo), str(dest))

            with ThreadPoolExecutor(PARALLEL) as pool:
                list(pool.map(one, dests))

        def check() -> None:
            for dest in dests:
                bench.expect(dest, data.head, f"parallel clone from {server.name}")()

        return action, check

    makers = {
        "clone": (clone("--bare"), True),
        "single-branch": (clone("--single-branch", "--no-checkout"), True),
        "fetch-1": (fetch(1) if "fetch-1" in workloads else None, True),
        "fetch-100": (fetch(100) if "fetch-100" in workloads else None, True),
        "no-op-fetch": (fetch(0) if "no-op-fetch" in workloads else None, True),
        "ls-remote": (ls_remote, True),
        "depth-1": (clone("--bare", "--depth", "1"), True),
        "push-50": (push50, False),
        "push-30MB": (push_file, False),
        "parallel-8": (parallel, True),
    }
    for workload in workloads:
        make, fetches = makers[workload]
        for protocol in protocols if fetches else ["-"]:
            bench.cell(data, workload, protocol, make)


# Report


def report(bench: Bench, idle: dict[str, float]) -> list[str]:
    lines = [
        f"median of {bench.runs} paired run(s) per cell; ratio / auth = server / {REFERENCE} "
        f"/ {AUTH_REFERENCE}; cpu = server process tree CPU s; peak/grow = tree RSS MiB "
        "(peak, peak - before)",
        "",
        f"{'data':<7}{'workload':<14}{'pr':<3}" + "".join(f"{name:>37}" for name in SERVERS),
        f"{'':<24}"
        + "".join(
            f"{'s':>7}{'ratio':>6}{'auth':>6}{'cpu':>6}{'peak':>6}{'grow':>6}" for _ in SERVERS
        ),
    ]
    #: The worst ratio of each server to each reference.
    worst: dict[tuple[str, str], float] = {}
    #: The issue's memory goal: the tree's peak during a clone or push over its idle RSS.
    over_idle: dict[str, float] = {}
    for key in sorted({name[:3] for name in bench.results}):
        workload = key[1]
        references = {
            ref: statistics.median(s.seconds for s in bench.results[(*key, ref)])
            for ref in (REFERENCE, AUTH_REFERENCE)
        }
        row = _row_key(*key)
        for name in SERVERS:
            samples = bench.results[(*key, name)]
            seconds = statistics.median(s.seconds for s in samples)
            cpu = statistics.median(s.cpu for s in samples)
            peak = max(s.peak_mib for s in samples)
            grow = max(s.growth_mib for s in samples)
            ratios = {ref: seconds / value for ref, value in references.items()}
            row += f"{seconds:>7.3f}{ratios[REFERENCE]:>6.2f}{ratios[AUTH_REFERENCE]:>6.2f}"
            row += f"{cpu:>6.2f}{peak:>6.0f}{grow:>6.0f}"
            for ref, ratio in ratios.items():
                worst[name, ref] = max(worst.get((name, ref), 0.0), ratio)
            if workload != "ls-remote" and "fetch" not in workload:
                over_idle[name] = max(over_idle.get(name, 0.0), peak - idle[name])
        lines.append(row)
    lines += [
        "",
        "idle RSS of the whole tree (MiB): " + ", ".join(f"{n} {v:.0f}" for n, v in idle.items()),
    ]
    for name in SERVERS:
        if (name, REFERENCE) in worst:
            lines.append(
                f"{name}: worst ratio {worst[name, REFERENCE]:.2f}x "
                f"({worst[name, AUTH_REFERENCE]:.2f}x to {AUTH_REFERENCE}); "
                "largest peak over idle in a clone or push "
                f"{over_idle.get(name, 0):.0f} MiB"
            )
    if ("git", REFERENCE) in worst:
        for ref in (REFERENCE, AUTH_REFERENCE):
            met = "met" if worst["git", ref] <= RATIO_GOAL else "NOT met"
            lines.append(f"goal: git engine <= {RATIO_GOAL}x {ref} everywhere: {met}")
        met = "met" if over_idle.get("git", 0) <= GROWTH_GOAL_MIB else "NOT met"
        lines.append(f"goal: git engine peak over idle <= {GROWTH_GOAL_MIB:.0f} MiB: {met}")
    return lines


def _row_key(data: str, workload: str, protocol: str) -> str:
    return f"{data:<7}{workload:<14}{protocol:<3}"


# Entry point

ALL_WORKLOADS = (
    "clone",
    "single-branch",
    "fetch-1",
    "fetch-100",
    "no-op-fetch",
    "ls-remote",
    "depth-1",
    "push-50",
    "push-30MB",
    "parallel-8",
)
QUICK_WORKLOADS = ("clone", "single-branch", "fetch-1", "no-op-fetch", "ls-remote", "push-50")
#: What runs on each repository: the big one is about moving bytes, not history.
PER_DATASET = {
    "small": ALL_WORKLOADS,
    "medium": tuple(w for w in ALL_WORKLOADS if w not in ("push-30MB", "parallel-8")),
    "big": ("clone", "no-op-fetch"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help="paired runs per cell (default 5; --quick 3)")
    parser.add_argument("--quick", action="store_true", help="small + medium, fewer workloads")
    parser.add_argument("--datasets", nargs="+", choices=sorted(DATASETS), help="only these")
    parser.add_argument("--workloads", nargs="+", choices=ALL_WORKLOADS, help="only these")
    parser.add_argument("--protocols", nargs="+", choices=("v0", "v2"), default=["v0", "v2"])
    args = parser.parse_args(argv)
    runs = args.runs or (3 if args.quick else 5)
    if runs < 1:
        parser.error("--runs must be at least 1")
    names = args.datasets or (["small", "medium"] if args.quick else ["small", "medium", "big"])
    work = Path(tempfile.mkdtemp(prefix="hfgit-engines-"))
    load_before = load_average()
    started = time.perf_counter()
    git = Git(work / "home")
    servers: list[Server] = []
    try:
        for name in names:
            data = DATASETS[name]
            print(f"building {name}: {data.label} ...", flush=True)
            data.source = work / f"src-{name}.git"
            data.head = git.import_bare(data.source, data.stream())
            git.run("--git-dir", str(data.source), "repack", "-adq")
        push_file = work / "push-file.git"
        git.import_bare(push_file, bigfiles_stream(1, PUSH_FILE, seed=11))
        servers = [start_hfgit(work, "git"), start_hfgit(work, "dulwich")]
        servers.append(start_http_backend(work, git))
        password = secrets.token_urlsafe(24)
        servers.append(start_http_backend(work, Git(work / "home", password), password=password))
        servers.append(start_raw_dulwich(work, git))
        bench = Bench(work, git, servers, runs)
        for server in servers:
            # Warm up: every server answers once before its idle memory is read.
            server.add_repo("warm")
            seed(git, DATASETS[names[0]].source, server.dirs["warm"])
        idle: dict[str, float] = {}
        for server in servers:
            server.git.run("ls-remote", server.url("warm"))
            idle[server.name] = server.usage()[0]
        for name in names:
            data = DATASETS[name]
            selected = PER_DATASET[name]
            if args.quick:
                selected = tuple(w for w in selected if w in QUICK_WORKLOADS)
            if args.workloads:
                selected = tuple(w for w in selected if w in args.workloads)
            run_workloads(bench, data, selected, args.protocols)
        lines = report(bench, idle)
    except BenchError as error:
        print(f"benchmark failed: {error}", file=sys.stderr)
        for server in servers:
            print(f"--- {server.name} log:\n{server.process.log_tail()}", file=sys.stderr)
        print(f"work directory kept for inspection: {work}", file=sys.stderr)
        return 1
    finally:
        for server in servers:
            server.process.stop()
    print("\n".join(["", *machine_facts(), f"nproc: {os.cpu_count()}", "", *lines]))
    print("\n" + closing_line(started, load_before))
    shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
