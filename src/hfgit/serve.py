"""``hfgit serve``: the gatekeeper under gunicorn, a production WSGI server.

gunicorn decodes chunked request bodies itself (and says so with
``wsgi.input_terminated``), runs several worker processes and restarts a stuck one.
"""

from __future__ import annotations

import ctypes
import dataclasses
import ipaddress
import os
import resource
import shlex
import shutil
import socket
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from gunicorn.app.base import BaseApplication

from .accounts import Accounts
from .config import Settings

#: Path without the query string and no user field: LFS transfer URLs carry signatures
#: in their query, and Basic usernames are not ours to log.
ACCESS_LOG_FORMAT = '%(h)s %(t)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'


WORKER_CLASSES = {"front": "hfgit.front.worker.FrontWorker", "gthread": "gthread"}


@dataclass(frozen=True)
class ServeOptions:
    host: str = "127.0.0.1"
    port: int = 8080
    workers: int = 2
    threads: int = 8
    #: Seconds a request may stay silent (slow body, stalled client) before its worker
    #: thread gives up on it; also the keep-alive wait between requests.
    timeout: int = 120
    keepalive: int = 5
    access_log: bool = True
    #: ``text`` (gunicorn's) or ``json`` (one object per line), access and error lines.
    log_format: str = "text"
    #: ``(host, port)`` of the Prometheus listener; None serves no metrics.
    metrics_bind: tuple[str, int] | None = None


class GunicornServer(BaseApplication):
    """gunicorn, configured from :class:`ServeOptions`, serving hfgit's application."""

    def __init__(self, settings: Settings, options: ServeOptions) -> None:
        self.settings = settings
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        options = self.options
        config = {
            "bind": f"{options.host}:{options.port}",
            "workers": options.workers,
            # Requests are read whole by each worker's event loop before a thread serves
            # them, so slow or stalled clients hold no thread (``hfgit.front``).
            "worker_class": WORKER_CLASSES[self.settings.worker],
            "threads": options.threads,
            "timeout": options.timeout,
            # SIGTERM: stop accepting, let requests in flight finish for this long.
            "graceful_timeout": self.settings.shutdown_grace,
            "keepalive": options.keepalive,
            "accesslog": "-" if options.access_log else None,
            "access_log_format": ACCESS_LOG_FORMAT,
            "errorlog": "-",
            "proc_name": "hfgit",
            "limit_request_line": 8190,
            # Several servers may run as one user (tests, blue/green): no shared control socket.
            "control_socket_disable": True,
            # gunicorn believes X-Forwarded-Proto from 127.0.0.1 by default; hfgit decides
            # itself (HFGIT_TRUST_PROXY), so a local client cannot fake https.
            "secure_scheme_headers": {},
            # A worker aborted for a missed heartbeat exits with requests in flight:
            # the git processes they relay go with it.
            "worker_abort": _kill_git_processes,
        }
        config.update(_observability(options))
        for key, value in config.items():
            self.cfg.set(key, value)

    def load(self):
        from .server import create_app
        from .server.git.sweep import PeriodicSweep

        # Each worker opens its own database engine: connections must not cross a fork.
        app = create_app(self.settings, Accounts.open(self.settings, create=False))
        PeriodicSweep(self.settings).start()
        return app


def _kill_git_processes(worker) -> None:
    from .server.git.gitproc import kill_all

    kill_all()


def _observability(options: ServeOptions) -> dict:
    """The logger class (redaction, format) and, with ``--metrics-bind``, the hooks that
    run the metrics listener in the master. Imported here, after :func:`serve` has set
    ``PROMETHEUS_MULTIPROC_DIR``: prometheus_client reads it once, at import."""
    from .logs import gunicorn_logger

    config: dict = {"logger_class": gunicorn_logger(options.log_format)}
    if options.metrics_bind is None:
        return config
    from .metrics import Listener

    host, port = options.metrics_bind
    listener = Listener(host, port, Path(os.environ["PROMETHEUS_MULTIPROC_DIR"]))
    config.update(
        when_ready=lambda server: listener.start(),
        post_fork=lambda server, worker: listener.close_inherited(),
        child_exit=lambda server, worker: listener.worker_exited(worker.pid),
        on_exit=lambda server: listener.stop(),
    )
    return config


def _metrics_directory(enabled: bool) -> None:
    """Give the workers a fresh private directory (0700) for their metric files, or none:
    samples left by an earlier run, or another server's, must not be added in."""
    os.environ.pop("PROMETHEUS_MULTIPROC_DIR", None)
    if enabled:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="hfgit-metrics-")


def _hfgit_command() -> str:
    """How the user can run ``hfgit`` from another terminal: by name when it is on PATH,
    else by the path of the environment it is installed in (``make serve``'s .venv)."""
    if shutil.which("hfgit"):
        return "hfgit"
    installed = Path(sys.executable).parent / "hfgit"
    return shlex.quote(str(installed)) if installed.exists() else "hfgit"


def _engine_line(settings: Settings) -> str:
    """Which engine answers fetches, and why: ``auto`` depends on the machine."""
    from .server.git.engines import resolve
    from .server.git.gitproc import GitBinary

    git = GitBinary.find(settings.data_dir)
    engine = resolve(settings.git_engine, git)
    if engine == "git" and git is None:
        raise SystemExit("hfgit serve --engine git: no git binary on PATH.")
    where = f" ({git.path})" if engine == "git" and git is not None else ""
    chosen = f", chosen by {settings.git_engine}" if settings.git_engine != engine else ""
    return f"{engine}{where}{chosen}"


def listen_url(host: str, port: int) -> str:
    """The URL of the listening address; for a wildcard one, this machine's name."""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return f"http://{host}:{port}"
    if address.is_unspecified:
        return f"http://{socket.getfqdn()}:{port}"
    return f"http://[{host}]:{port}" if address.version == 6 else f"http://{host}:{port}"


def serve(settings: Settings, options: ServeOptions) -> None:
    """Create the data directory and schema once, say how to start, then serve forever."""
    _metrics_directory(options.metrics_bind is not None)
    from .logs import announce

    accounts = Accounts.open(settings)
    has_users = bool(accounts.users.list_users())
    accounts.store.dispose()
    url = listen_url(options.host, options.port)
    settings = dataclasses.replace(settings, listen_url=url)
    announce(f"hfgit serving {url}  (data: {settings.data_dir})", options.log_format)
    announce(f"git engine: {_engine_line(settings)}", options.log_format)
    if settings.public_url is None and not settings.trust_proxy:
        announce(
            f"Absolute URLs (LFS transfers, API) use {url}; clients that reach this server "
            "by another name need --public-url (HFGIT_PUBLIC_URL).",
            options.log_format,
        )
    if not has_users:
        flag = f" --data-dir {shlex.quote(str(settings.data_dir))}"
        hfgit = _hfgit_command()
        announce(
            "No users yet. In another terminal, create one and a first token:\n"
            f"  {hfgit} user add alice{flag}\n"
            f"  {hfgit} repo create alice/my-model --private{flag}\n"
            f"  {hfgit} token create alice --name laptop --role write{flag}\n"
            f"Then: git clone {url}/alice/my-model  (username: alice, password: the token)",
            options.log_format,
        )
    from .server.git.sweep import recover_at_start

    # Before any worker exists: what killed pushes and uploads left goes now.
    recovered = recover_at_start(settings)
    if recovered.total:
        announce(
            f"Recovered after a crash: {recovered.quarantines} push quarantines, "
            f"{recovered.temp_packs} temporary packs, {recovered.ref_locks} stale ref locks, "
            f"{recovered.deleted_repos} half-deleted repositories removed.",
            options.log_format,
        )
    if options.metrics_bind is not None:
        host, port = options.metrics_bind
        announce(f"metrics on http://{host}:{port}/metrics", options.log_format)
    _raise_open_files_limit()
    _limit_malloc_arenas()
    GunicornServer(settings, options).run()


#: glibc's ``mallopt`` parameter for the most malloc arenas (``M_ARENA_MAX``).
_M_ARENA_MAX = -8


def _limit_malloc_arenas() -> None:
    """Two malloc arenas, as ``MALLOC_ARENA_MAX=2`` would, in the master and so in every
    worker it forks; an operator's own ``MALLOC_ARENA_MAX`` is left to glibc.

    glibc gives threads that allocate at once arenas of their own, up to eight per CPU,
    and memory freed there is rarely given back: under minutes of mixed load a dulwich
    worker ended 22% above its idle size with the default, 9% with two
    (``bench/mixed_load.py``, ``docs/benchmarks.md``). Another C library: nothing to do.
    """
    if "MALLOC_ARENA_MAX" in os.environ:
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return
    mallopt(_M_ARENA_MAX, 2)


def _raise_open_files_limit() -> None:
    """Every connection costs a file descriptor while it waits in a worker's event loop:
    lift the soft limit to the hard one (often 1024 of 524288), as far as allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
