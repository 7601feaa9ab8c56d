"""``hfgit serve``: the gatekeeper under gunicorn, a production WSGI server.

gunicorn decodes chunked request bodies itself (and says so with
``wsgi.input_terminated``), runs several worker processes and restarts a stuck one.
"""

from __future__ import annotations

import resource
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from gunicorn.app.base import BaseApplication

from .accounts import Accounts
from .config import Settings

#: Path without the query string and no user field: LFS transfer URLs carry signatures
#: in their query, and Basic usernames are not ours to log.
ACCESS_LOG_FORMAT = '%(h)s %(t)s "%(m)s %(U)s" %(s)s %(B)s %(M)sms'


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
            "worker_class": "hfgit.front.worker.FrontWorker",
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
        }
        for key, value in config.items():
            self.cfg.set(key, value)

    def load(self):
        from .server import create_app

        # Each worker opens its own database engine: connections must not cross a fork.
        return create_app(self.settings, Accounts.open(self.settings, create=False))


def _hfgit_command() -> str:
    """How the user can run ``hfgit`` from another terminal: by name when it is on PATH,
    else by the path of the environment it is installed in (``make serve``'s .venv)."""
    if shutil.which("hfgit"):
        return "hfgit"
    installed = Path(sys.executable).parent / "hfgit"
    return shlex.quote(str(installed)) if installed.exists() else "hfgit"


def serve(settings: Settings, options: ServeOptions) -> None:
    """Create the data directory and schema once, say how to start, then serve forever."""
    accounts = Accounts.open(settings)
    has_users = bool(accounts.users.list_users())
    accounts.store.dispose()
    url = f"http://{options.host}:{options.port}"
    print(f"hfgit serving {url}  (data: {settings.data_dir})", file=sys.stderr)
    if not has_users:
        flag = f" --data-dir {shlex.quote(str(settings.data_dir))}"
        hfgit = _hfgit_command()
        print(
            "No users yet. In another terminal, create one and a first token:\n"
            f"  {hfgit} user add alice{flag}\n"
            f"  {hfgit} repo create alice/my-model --private{flag}\n"
            f"  {hfgit} token create alice --name laptop --role write{flag}\n"
            f"Then: git clone {url}/alice/my-model  (username: alice, password: the token)",
            file=sys.stderr,
        )
    _raise_open_files_limit()
    GunicornServer(settings, options).run()


def _raise_open_files_limit() -> None:
    """Every connection costs a file descriptor while it waits in a worker's event loop:
    lift the soft limit to the hard one (often 1024 of 524288), as far as allowed."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = hard if hard != resource.RLIM_INFINITY else 65536
    if soft != resource.RLIM_INFINITY and soft < wanted:
        resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
