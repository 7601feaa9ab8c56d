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
  and through the same server with dulwich's plain handlers swapped in (a WSGI variant
  built here: ``_PlainGitService``; same gunicorn settings, same data directory and
  database, and clones read the very same repository). Two repositories: ``--commits``
  commits each rewriting three ~2 KB files, and four 7.5 MB incompressible files (30 MB,
  each file under the default 10 MiB blob limit).

The two variants run alternately, one run of each after the other, in alternating
order, so both see the same background load (another benchmark may share the machine);
the load average is printed before and after.

    .venv/bin/python bench/push_clone.py            # a few minutes on 2 cores
    .venv/bin/python bench/push_clone.py --quick    # smoke run
    .venv/bin/python bench/push_clone.py --only handlers
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from io import BytesIO
from pathlib import Path

from dulwich.protocol import ReceivableProtocol
from dulwich.repo import Repo
from dulwich.server import ReceivePackHandler, UploadPackHandler

from hfgit.accounts import Accounts
from hfgit.config import MiB, Settings
from hfgit.names import RepoId
from hfgit.serve import GunicornServer, ServeOptions
from hfgit.server.git import GitService, OneRepoBackend
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
    "LC_ALL": "C",
}
VARIANTS = ("dulwich", "hardened")
OWNER = "bench"
#: Carries the token to the credential helper, and only to it: never on a command line.
TOKEN_ENV = "BENCH_GIT_TOKEN"


def pkt(data: bytes) -> bytes:
    return f"{len(data) + 4:04x}".encode() + data


def git(*args: str, cwd: Path | None = None, input: bytes | None = None, env=None) -> bytes:
    result = subprocess.run(
        ["git", *args], cwd=cwd, env=env or ENV, input=input, capture_output=True, timeout=600
    )
    if result.returncode != 0:
        raise RuntimeError(f"git {args[0]} failed: {result.stderr.decode(errors='replace')}")
    return result.stdout


def median_line(label: str, times: dict[str, list[float]]) -> str:
    base = statistics.median(times["dulwich"])
    ours = statistics.median(times["hardened"])
    return f"  {label:26} dulwich {base:7.3f}  hardened {ours:7.3f}  ratio {ours / base:.3f}"


def load_average() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


# --- handlers in process ------------------------------------------------------------


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


def run_handler(handler, repo: Repo, body: bytes, **kw) -> tuple[float, bytes]:
    out = BytesIO()
    proto = ReceivableProtocol(BytesIO(body).read, out.write)
    start = time.perf_counter()
    handler(OneRepoBackend(repo), ["/"], proto, stateless_rpc=True, **kw).handle()
    return time.perf_counter() - start, out.getvalue()


def bench_handlers(runs: int, commits: int) -> None:
    settings = Settings(data_dir=Path(tempfile.gettempdir()), database_url="sqlite://")
    push_limits = PushLimits.from_settings(settings)
    fetch_limits = FetchLimits.from_settings(settings)
    with tempfile.TemporaryDirectory(prefix="hfgit-bench-") as tmp:
        root = Path(tmp)
        tip, pack = make_source(root, commits)
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


# --- end to end over HTTP ------------------------------------------------------------


class _PlainReceivePackHandler(ReceivePackHandler):
    """dulwich's receive-pack as it comes, still recording the push like the real one."""

    def __init__(self, *args, limits: PushLimits, on_push, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._on_push = on_push

    def _on_post_receive(self, client_refs) -> None:
        self._on_push(list(client_refs))


class _PlainGitService(GitService):
    """hfgit's git endpoints with dulwich's plain handlers: the issue's starting point."""

    def _handler(self, service, repo, proto, caller, record, **kw):
        backend = OneRepoBackend(repo)
        if service == "git-upload-pack":
            return UploadPackHandler(backend, ["/"], proto, stateless_rpc=True, **kw)
        return _PlainReceivePackHandler(
            backend,
            ["/"],
            proto,
            stateless_rpc=True,
            limits=self.push_limits,
            on_push=lambda refs: self._audit_push(caller, record, refs),
            **kw,
        )


class _PlainServer(GunicornServer):
    """``hfgit serve``'s gunicorn with the app's git service swapped for the plain one."""

    def load(self):
        app = super().load()
        app.git = _PlainGitService(app.settings, app.accounts, app.gate)
        return app


def serve_plain(data_dir: str, port: int) -> None:
    _PlainServer(Settings.load(data_dir), ServeOptions(port=port)).run()


def history_stream(commits: int, files: int = 50, seed: int = 2) -> bytes:
    """fast-import: ``commits`` commits, each rewriting three ~2 KB text files."""
    rng = random.Random(seed)
    words = [f"{rng.getrandbits(32):08x}" for _ in range(4000)]
    parts: list[bytes] = []
    for index in range(commits):
        message = f"change {index}\n".encode()
        parts.append(b"commit refs/heads/main\n")
        parts.append(b"committer B <b@example.com> %d +0000\n" % (1_700_000_000 + 60 * index))
        parts.append(b"data %d\n%s\n" % (len(message), message))
        for number in range(files) if index == 0 else rng.sample(range(files), 3):
            text = "\n".join(" ".join(rng.choices(words, k=8)) for _ in range(28)) + "\n"
            parts.append(b"M 100644 inline src/file%02d.txt\ndata %d\n" % (number, len(text)))
            parts.append(text.encode() + b"\n")
    return b"".join(parts)


def bigfiles_stream(count: int, size: int, seed: int = 3) -> bytes:
    """fast-import: one commit with ``count`` incompressible files of ``size`` bytes."""
    rng = random.Random(seed)
    parts = [b"commit refs/heads/main\ncommitter B <b@example.com> 1700000000 +0000\n"]
    parts.append(b"data 8\nweights\n")
    for index in range(count):
        parts.append(b"M 100644 inline model-%d.bin\ndata %d\n" % (index, size))
        parts.append(rng.randbytes(size) + b"\n")
    return b"".join(parts)


def start(command: list[str], port: int, log: Path) -> subprocess.Popen:
    with log.open("wb") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return process
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    process.terminate()
    raise RuntimeError(f"server on port {port} did not answer:\n{log.read_text()[-3000:]}")


def stop(process: subprocess.Popen) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def bench_end_to_end(runs: int, commits: int) -> None:
    with tempfile.TemporaryDirectory(prefix="hfgit-bench-e2e-") as tmp:
        root = Path(tmp)
        data_dir = root / "data"
        settings = Settings.load(data_dir)
        accounts = Accounts.open(settings)
        accounts.users.create_user(OWNER)
        token, _ = accounts.tokens.create(OWNER, "bench", "write")

        def new_repo(name: str) -> Path:
            record = accounts.repos.create(RepoId(type="model", namespace=OWNER, name=name))
            return accounts.repos.path(record)

        home = root / "home"
        home.mkdir()
        answer = f'echo username={OWNER} && echo "password=${TOKEN_ENV}"'
        helper = f'!f() {{ test "$1" = get && {answer}; }}; f'
        env = {**ENV, "HOME": str(home), "GIT_TERMINAL_PROMPT": "0", TOKEN_ENV: token}
        config = ["-c", "credential.helper=", "-c", f"credential.helper={helper}"]

        datasets = {
            f"{commits} commits": history_stream(commits),
            "4 x 7.5 MB files": bigfiles_stream(4, 15 * MiB // 2),
        }
        heads: dict[str, bytes] = {}
        sources: dict[str, Path] = {}
        total = runs + 1
        for index, (label, stream) in enumerate(datasets.items()):
            source = root / f"src-{index}.git"
            git("init", "--bare", "-q", "-b", "main", str(source))
            git("--git-dir", str(source), "fast-import", "--quiet", input=stream)
            heads[label] = git("--git-dir", str(source), "rev-parse", "main").strip()
            sources[label] = source
            # One repository both servers clone from: the same bytes on disk for both.
            served = new_repo(f"clone-{index}")
            git("--git-dir", str(source), "push", "-q", str(served), "main")
            git("--git-dir", str(served), "repack", "-adq")
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
                servers[name] = start(commands[name], ports[name], root / f"{name}.log")
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
                        base = f"http://127.0.0.1:{ports[name]}/{OWNER}"
                        start_time = time.perf_counter()
                        git(
                            *config,
                            "--git-dir",
                            str(sources[label]),
                            "push",
                            "-q",
                            f"{base}/push-{index}-{name}-{run}",
                            "main",
                            env=env,
                        )
                        pushed = time.perf_counter() - start_time
                        dest = root / f"clone-{name}-{run}-{index}.git"
                        start_time = time.perf_counter()
                        git(
                            *config,
                            "clone",
                            "-q",
                            "--bare",
                            f"{base}/clone-{index}",
                            str(dest),
                            env=env,
                        )
                        cloned = time.perf_counter() - start_time
                        if git("--git-dir", str(dest), "rev-parse", "main").strip() != heads[label]:
                            raise RuntimeError(f"clone through {name} did not get main")
                        shutil.rmtree(dest)
                        if run:
                            times[label, "push"][name].append(pushed)
                            times[label, "clone"][name].append(cloned)
                print("  warm-up done" if run == 0 else f"  run {run}/{runs} done", flush=True)
        finally:
            for process in servers.values():
                stop(process)
        accounts = Accounts.open(settings, create=False)
        for index, label in enumerate(datasets):
            for name in VARIANTS:
                for run in range(total):
                    record = accounts.repos.get(
                        RepoId(type="model", namespace=OWNER, name=f"push-{index}-{name}-{run}")
                    )
                    landed = git(
                        "--git-dir", str(accounts.repos.path(record)), "rev-parse", "main"
                    ).strip()
                    if landed != heads[label]:
                        raise RuntimeError(f"push through {name} did not land main")
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
    parser.add_argument("--only", choices=("handlers", "e2e"))
    parser.add_argument(
        "--serve-plain", nargs=2, metavar=("DATA_DIR", "PORT"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.serve_plain:
        serve_plain(args.serve_plain[0], int(args.serve_plain[1]))
        return
    if args.quick:
        args.runs, args.commits = 3, 40
    print("goal: hardened / dulwich at most 1.05 for push and clone (issue 3)")
    print(f"load average before: {load_average()} on {os.cpu_count()} cores")
    if args.only in (None, "handlers"):
        bench_handlers(args.runs, args.commits)
    if args.only in (None, "e2e"):
        bench_end_to_end(args.runs, args.commits)


if __name__ == "__main__":
    main()
