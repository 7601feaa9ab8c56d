"""Push and clone through the hardened handlers vs plain dulwich handlers (issue 3).

The starting point of issue 3 is dulwich's own ``ReceivePackHandler`` and
``UploadPackHandler`` behind the same gate. The goal: push and clone at most 5% slower.
Two measurements, each printing medians over ``--runs`` runs (after one warm-up) and
the ratio hardened / dulwich:

* **handlers** (in process): the same stateless request bodies fed to both handler
  pairs, so the difference is the handlers alone (quarantine, object and connectivity
  checks, lock, CAS; want/have checks). *push*: a pack made by ``git pack-objects`` of a
  repository with ``--commits`` commits plus one 8 MB file, into an empty bare
  repository (a fresh copy each run); *clone*: ``want`` the tip, ``done``, the whole pack.
* **end to end**: real ``git push`` (whole history into an empty repository) and
  ``git clone --bare`` over HTTP with a write token, through ``hfgit serve`` as shipped
  and through the same server with dulwich's plain handlers swapped in (the ``plain`` git
  engine registered here; same gunicorn settings, same data directory and database, and
  clones read the very same repository). Two repositories: ``--commits``
  commits each rewriting three ~2 KB files, and four 7.5 MB incompressible files (30 MB,
  each file under the default 10 MiB blob limit).

* **scan** (in process, ``--only scan``): push protection's cost. The same hardened
  receive-pack with and without the token scan (a ``live_tokens`` lookup that finds
  nothing, against none), pushing four 7.5 MB incompressible files (30 MB) and, as a
  second case, 30 MB of text with a token-shaped string (bad checksum) every 75 bytes, into an empty
  repository. Then end to end: real ``git push`` of the 30 MB of files over HTTP to
  ``hfgit serve`` as shipped and to the same server with the scan off (the ``noscan``
  git engine registered here). Issue 12's goal: at most 5% slower.

The two variants run alternately, one run of each after the other, in alternating
order, so both see the same background load (another benchmark may share the machine);
the load average is printed before and after.

    .venv/bin/python bench/push_clone.py            # a few minutes on 2 cores
    .venv/bin/python bench/push_clone.py --quick    # smoke run
    .venv/bin/python bench/push_clone.py --only handlers
    .venv/bin/python bench/push_clone.py --only scan
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import string
import sys
import tempfile
import time
from io import BytesIO
from pathlib import Path

from dulwich.protocol import ReceivableProtocol
from dulwich.repo import Repo
from dulwich.server import ReceivePackHandler, UploadPackHandler
from support import (
    USER,
    BenchError,
    Git,
    ServerProcess,
    bigfiles_stream,
    free_port,
    history_stream,
    load_average,
)

from hfgit.accounts import Accounts
from hfgit.config import MiB, Settings
from hfgit.names import RepoId
from hfgit.serve import GunicornServer, ServeOptions
from hfgit.server.git.engines import (
    RECEIVE_PACK,
    UPLOAD_PACK,
    DulwichService,
    EngineContext,
    OneRepoBackend,
    dulwich_engine,
    register,
)
from hfgit.server.git.fetch import HardenedUploadPackHandler
from hfgit.server.git.push import HardenedReceivePackHandler, PushLimits

ZERO = b"0" * 40
VARIANTS = ("dulwich", "hardened")


def pkt(data: bytes) -> bytes:
    return f"{len(data) + 4:04x}".encode() + data


def median_line(label: str, times: dict[str, list[float]]) -> str:
    base = statistics.median(times["dulwich"])
    ours = statistics.median(times["hardened"])
    return f"  {label:26} dulwich {base:7.3f}  hardened {ours:7.3f}  ratio {ours / base:.3f}"


# --- handlers in process ------------------------------------------------------------


def make_source(git: Git, root: Path, commits: int) -> tuple[bytes, bytes]:
    """A work tree with history; returns (tip, pack of everything)."""
    work = root / "src"
    git.run("init", "-q", "-b", "main", str(work), cwd=root)
    (work / "big.bin").write_bytes(os.urandom(8 * 1024 * 1024))
    for index in range(commits):
        for name in range(3):
            path = work / f"dir{name}" / f"file{index % 20}.txt"
            path.parent.mkdir(exist_ok=True)
            path.write_text(f"commit {index} file {name}\n" * 50)
        git.run("add", "-A", cwd=work)
        git.run("commit", "-q", "-m", f"c{index}", cwd=work)
    tip = git.run("rev-parse", "HEAD", cwd=work).strip()
    pack = git.run("pack-objects", "--all", "--stdout", "--revs", cwd=work, input=b"")
    return tip, pack


def run_handler(handler, repo: Repo, body: bytes, **kw) -> tuple[float, bytes]:
    out = BytesIO()
    proto = ReceivableProtocol(BytesIO(body).read, out.write)
    start = time.perf_counter()
    handler(OneRepoBackend(repo), ["/"], proto, stateless_rpc=True, **kw).handle()
    return time.perf_counter() - start, out.getvalue()


def bench_handlers(runs: int, commits: int) -> None:
    settings = Settings(data_dir=Path(tempfile.gettempdir()), database_url="sqlite://")
    push_limits = PushLimits.from_settings(settings)
    with tempfile.TemporaryDirectory(prefix="hfgit-bench-") as tmp:
        root = Path(tmp)
        tip, pack = make_source(Git(root / "home"), root, commits)
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
                {},
            ),
        }
        times = {op: {name: [] for name in variants} for op in ("push", "clone")}
        for run_index in range(runs + 1):
            order = list(variants) if run_index % 2 else list(reversed(variants))
            for name in order:
                receive, receive_kw, upload, upload_kw = variants[name]
                target = root / f"{name}-{run_index}.git"
                shutil.copytree(empty, target)
                with Repo(str(target)) as repo:
                    took, answer = run_handler(receive, repo, push, **receive_kw)
                    assert b"ok refs/heads/main" in answer, answer[-200:]
                    if run_index:
                        times["push"][name].append(took)
                with Repo(str(target)) as repo:
                    took, answer = run_handler(upload, repo, clone, **upload_kw)
                    assert b"PACK" in answer
                    if run_index:
                        times["clone"][name].append(took)
                shutil.rmtree(target)

    print(
        f"\nhandlers in process: pack {len(pack) / MiB:.1f} MiB, {commits} commits + one 8 MB file"
    )
    print(f"medians over {runs} runs (seconds):")
    for op in ("push", "clone"):
        print(median_line(op, times[op]))


def _no_live_tokens(candidates) -> dict:
    """A lookup that finds nothing: the scan's cost without a database."""
    list(candidates)
    return {}


def make_files_pack(git: Git, root: Path, files: dict[str, bytes]) -> tuple[bytes, bytes]:
    """One commit holding ``files``; returns (tip, pack of everything)."""
    work = root / "files"
    git.run("init", "-q", "-b", "main", str(work), cwd=root)
    for name, data in files.items():
        (work / name).write_bytes(data)
    git.run("add", "-A", cwd=work)
    git.run("commit", "-q", "-m", "files", cwd=work)
    tip = git.run("rev-parse", "HEAD", cwd=work).strip()
    pack = git.run("pack-objects", "--all", "--stdout", "--revs", cwd=work, input=b"")
    shutil.rmtree(work)
    return tip, pack


def bench_scan(runs: int) -> None:
    """Push protection's token scan: the hardened push with and without it."""
    settings = Settings(data_dir=Path(tempfile.gettempdir()), database_url="sqlite://")
    limits = PushLimits.from_settings(settings)
    shaped = "hf_" + string.ascii_letters[:34]  # token-shaped, never a real token
    line = f"see {shaped}, a token-shaped string, in text\n".encode()
    cases = {
        "4 x 7.5 MB random": {f"big{i}.bin": os.urandom(15 * MiB // 2) for i in range(4)},
        "30 MB text with hf_": {
            f"text{i}.txt": line * (15 * MiB // 2 // len(line)) for i in range(4)
        },
    }
    variants = {"no scan": {}, "scan": {"live_tokens": _no_live_tokens}}
    with tempfile.TemporaryDirectory(prefix="hfgit-bench-scan-") as tmp:
        root = Path(tmp)
        git = Git(root / "home")
        empty = root / "empty.git"
        Repo.init_bare(str(empty), mkdir=True)
        print(f"\npush protection scan, in process (load average {load_average()})")
        print(f"medians over {runs} runs (seconds):")
        for label, files in cases.items():
            tip, pack = make_files_pack(git, root, files)
            push = pkt(ZERO + b" " + tip + b" refs/heads/main\0report-status ofs-delta\n")
            push += b"0000" + pack
            times: dict[str, list[float]] = {name: [] for name in variants}
            for run_index in range(runs + 1):
                order = list(variants) if run_index % 2 else list(reversed(variants))
                for name in order:
                    target = root / f"scan-{run_index}.git"
                    shutil.copytree(empty, target)
                    with Repo(str(target)) as repo:
                        took, answer = run_handler(
                            HardenedReceivePackHandler, repo, push, limits=limits, **variants[name]
                        )
                    assert b"ok refs/heads/main" in answer, answer[-200:]
                    if run_index:
                        times[name].append(took)
                    shutil.rmtree(target)
            base = statistics.median(times["no scan"])
            ours = statistics.median(times["scan"])
            print(
                f"  {label:22} ({len(pack) / MiB:.1f} MiB pack)  no scan {base:7.3f}"
                f"  scan {ours:7.3f}  ratio {ours / base:.3f}"
            )
    bench_scan_end_to_end(runs)
    print(f"load average after: {load_average()}")


# --- end to end over HTTP ------------------------------------------------------------


class _PlainReceivePackHandler(ReceivePackHandler):
    """dulwich's receive-pack as it comes, still recording the push like the real one."""

    def __init__(self, *args, on_push, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._on_push = on_push

    def _on_post_receive(self, client_refs) -> None:
        self._on_push(list(client_refs))


def plain_engine(context: EngineContext):
    """hfgit's git endpoints with dulwich's plain handlers: the issue's starting point."""

    def upload_pack(session, proto, **kwargs):
        return UploadPackHandler(
            OneRepoBackend(session.repo), ["/"], proto, stateless_rpc=True, **kwargs
        )

    def receive_pack(session, proto, **kwargs):
        return _PlainReceivePackHandler(
            OneRepoBackend(session.repo),
            ["/"],
            proto,
            stateless_rpc=True,
            on_push=lambda refs: context.record_push(session, refs),
            **kwargs,
        )

    return {UPLOAD_PACK: DulwichService(upload_pack), RECEIVE_PACK: DulwichService(receive_pack)}


register("plain", plain_engine)


register("noscan", lambda context: dulwich_engine(dataclasses.replace(context, live_tokens=None)))


def serve_plain(data_dir: str, port: int, engine: str = "plain") -> None:
    settings = dataclasses.replace(Settings.load(data_dir), git_engine=engine)
    GunicornServer(settings, ServeOptions(port=port)).run()


def bench_scan_end_to_end(runs: int) -> None:
    """``git push`` of 30 MB of files to hfgit serve, with and without the token scan."""
    names = ("noscan", "scan")
    with tempfile.TemporaryDirectory(prefix="hfgit-bench-scan-e2e-") as tmp:
        root = Path(tmp)
        data_dir = root / "data"
        settings = Settings.load(data_dir)
        accounts = Accounts.open(settings)
        accounts.users.create_user(USER)
        token, _ = accounts.tokens.create(USER, "bench", "write")
        for name in names:
            for run in range(runs + 1):
                accounts.repos.create(RepoId(type="model", namespace=USER, name=f"{name}-{run}"))
        accounts.store.dispose()
        git = Git(root / "home", token)
        source = root / "src.git"
        git.import_bare(source, bigfiles_stream(4, 15 * MiB // 2))
        ports = {name: free_port() for name in names}
        python = sys.executable
        commands = {
            "scan": [
                *(python, "-m", "hfgit.cli", "serve"),
                *("--data-dir", str(data_dir), "--port", str(ports["scan"])),
            ],
            "noscan": [python, __file__, "--serve-noscan", str(data_dir), str(ports["noscan"])],
        }
        servers = {}
        times: dict[str, list[float]] = {name: [] for name in names}
        try:
            for name in names:
                servers[name] = ServerProcess.start(
                    commands[name], ports[name], root / f"{name}.log"
                )
            for run in range(runs + 1):
                for name in names if run % 2 else names[::-1]:
                    target = f"{servers[name].url}/{USER}/{name}-{run}"
                    took = git.timed("--git-dir", str(source), "push", "-q", target, "main")
                    if run:
                        times[name].append(took)
        finally:
            for server in servers.values():
                server.stop()
    base, ours = statistics.median(times["noscan"]), statistics.median(times["scan"])
    print(f"  HTTP git push, 4 x 7.5 MB files  no scan {base:7.3f}  scan {ours:7.3f}", end="")
    print(f"  ratio {ours / base:.3f}")


def bench_end_to_end(runs: int, commits: int) -> None:
    with tempfile.TemporaryDirectory(prefix="hfgit-bench-e2e-") as tmp:
        root = Path(tmp)
        data_dir = root / "data"
        settings = Settings.load(data_dir)
        accounts = Accounts.open(settings)
        accounts.users.create_user(USER)
        token, _ = accounts.tokens.create(USER, "bench", "write")

        def new_repo(name: str) -> Path:
            record = accounts.repos.create(RepoId(type="model", namespace=USER, name=name))
            return accounts.repos.path(record)

        git = Git(root / "home", token)

        datasets = {
            f"{commits} commits": history_stream(commits),
            "4 x 7.5 MB files": bigfiles_stream(4, 15 * MiB // 2),
        }
        heads: dict[str, str] = {}
        sources: dict[str, Path] = {}
        total = runs + 1
        for index, (label, stream) in enumerate(datasets.items()):
            source = root / f"src-{index}.git"
            heads[label] = git.import_bare(source, stream)
            sources[label] = source
            # One repository both servers clone from: the same bytes on disk for both.
            git.seed(source, new_repo(f"clone-{index}"))
        for index in range(len(datasets)):
            for name in VARIANTS:
                for run in range(total):
                    new_repo(f"push-{index}-{name}-{run}")
        accounts.store.dispose()

        ports = {name: free_port() for name in VARIANTS}
        python = sys.executable
        commands = {
            "hardened": [
                *(python, "-m", "hfgit.cli", "serve"),
                *("--data-dir", str(data_dir), "--port", str(ports["hardened"])),
            ],
            "dulwich": [python, __file__, "--serve-plain", str(data_dir), str(ports["dulwich"])],
        }
        servers = {}
        try:
            for name in VARIANTS:
                log = root / f"{name}.log"
                servers[name] = ServerProcess.start(commands[name], ports[name], log)
            times = {
                (label, op): {n: [] for n in VARIANTS}
                for label in datasets
                for op in ("push", "clone")
            }
            print(f"\nend to end over HTTP (load average {load_average()})", flush=True)
            for run in range(total):
                order = VARIANTS if run % 2 else VARIANTS[::-1]
                for index, label in enumerate(datasets):
                    for name in order:
                        base = f"{servers[name].url}/{USER}"
                        target = f"{base}/push-{index}-{name}-{run}"
                        pushed = git.timed(
                            "--git-dir", str(sources[label]), "push", "-q", target, "main"
                        )
                        dest = root / f"clone-{name}-{run}-{index}.git"
                        cloned = git.timed(
                            "clone", "-q", "--bare", f"{base}/clone-{index}", str(dest)
                        )
                        if git.head(dest) != heads[label]:
                            raise BenchError(f"clone through {name} did not get main")
                        shutil.rmtree(dest)
                        if run:
                            times[label, "push"][name].append(pushed)
                            times[label, "clone"][name].append(cloned)
                print("  warm-up done" if run == 0 else f"  run {run}/{runs} done", flush=True)
        finally:
            for server in servers.values():
                server.stop()
        accounts = Accounts.open(settings, create=False)
        for index, label in enumerate(datasets):
            for name in VARIANTS:
                for run in range(total):
                    record = accounts.repos.get(
                        RepoId(type="model", namespace=USER, name=f"push-{index}-{name}-{run}")
                    )
                    if git.head(accounts.repos.path(record)) != heads[label]:
                        raise BenchError(f"push through {name} did not land main")
        accounts.store.dispose()

    print(f"medians over {runs} runs (seconds), variants interleaved run by run:")
    for (label, op), values in times.items():
        print(median_line(f"{op} {label}", values))
    print(f"load average after: {load_average()}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--commits", type=int, default=200)
    parser.add_argument("--quick", action="store_true", help="3 runs, 40 commits")
    parser.add_argument("--only", choices=("handlers", "e2e", "scan"))
    parser.add_argument(
        "--serve-plain", nargs=2, metavar=("DATA_DIR", "PORT"), help=argparse.SUPPRESS
    )
    parser.add_argument(
        "--serve-noscan", nargs=2, metavar=("DATA_DIR", "PORT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve_plain:
        serve_plain(args.serve_plain[0], int(args.serve_plain[1]))
        return
    if args.serve_noscan:
        serve_plain(args.serve_noscan[0], int(args.serve_noscan[1]), engine="noscan")
        return
    if args.quick:
        args.runs, args.commits = 3, 40
    print("goal: hardened / dulwich at most 1.05 for push and clone (issue 3)")
    print(f"load average before: {load_average()} on {os.cpu_count()} cores")
    if args.only in (None, "handlers"):
        bench_handlers(args.runs, args.commits)
    if args.only in (None, "e2e"):
        bench_end_to_end(args.runs, args.commits)
    if args.only in (None, "scan"):
        bench_scan(args.runs)


if __name__ == "__main__":
    main()
