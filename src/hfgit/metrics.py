"""Prometheus metrics: what is counted, and the listener that serves them.

Under ``hfgit serve`` every worker process writes its samples to files in
``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's multiprocess mode; ``serve`` sets it
to a fresh private directory before this module is imported), and the listener in the
gunicorn master adds up every worker's files on each scrape. Without that variable the
samples stay in the process, which is what an application run under another WSGI
server gets.

Labels are bounded by construction: the surface (from the route table), the status,
the gate's reasons for a failed authentication. Never a path, a name or a secret.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, multiprocess
from prometheus_client.exposition import start_http_server

REQUESTS = Counter(
    "hfgit_requests", "Requests answered, by surface and HTTP status.", ["surface", "status"]
)
REQUEST_DURATION = Histogram(
    "hfgit_request_duration_seconds",
    "Time from the request reaching hfgit to the last byte of its answer, by surface.",
    ["surface"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
RECEIVED = Counter("hfgit_received_bytes", "Request body bytes read, by surface.", ["surface"])
SENT = Counter("hfgit_sent_bytes", "Response body bytes sent, by surface.", ["surface"])
AUTH_FAILURES = Counter(
    "hfgit_auth_failures",
    "Credentials that identified nobody, by the gate's reason (password, org_token, invalid).",
    ["reason"],
)
RATE_LIMITED = Counter(
    "hfgit_rate_limited", "Requests refused with 429 Too Many Requests, by surface.", ["surface"]
)
PUSHES = Counter(
    "hfgit_pushes", "git-receive-pack requests (push attempts), by HTTP status.", ["status"]
)
PUSHES_LANDED = Counter("hfgit_pushes_landed", "Pushes that moved at least one ref.")
REFS_UPDATED = Counter("hfgit_push_refs_updated", "Refs moved by pushes.")
PUSH_DURATION = Histogram(
    "hfgit_push_duration_seconds",
    "Duration of git-receive-pack requests: receiving, checking and landing a push.",
    buckets=(0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
PACK_GENERATION = Histogram(
    "hfgit_pack_generation_seconds",
    "Duration of git-upload-pack requests: negotiating and streaming a pack to a fetch.",
    buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600),
)
DATABASE_ERRORS = Counter(
    "hfgit_database_errors", "Requests answered 503 because the database was unavailable."
)


def observe_request(
    route: str | None,
    fallback_surface: str,
    status: int,
    seconds: float,
    *,
    sent: int,
    received: int,
    auth_failure: str | None,
) -> None:
    """Count one finished request; ``route`` is its endpoint, None when no rule matched."""
    surface = route.partition(".")[0] if route else fallback_surface
    REQUESTS.labels(surface, str(status)).inc()
    REQUEST_DURATION.labels(surface).observe(seconds)
    if sent:
        SENT.labels(surface).inc(sent)
    if received:
        RECEIVED.labels(surface).inc(received)
    if auth_failure:
        AUTH_FAILURES.labels(auth_failure).inc()
    if status == 429:
        RATE_LIMITED.labels(surface).inc()
    if route == "git.receive_pack":
        PUSHES.labels(str(status)).inc()
        PUSH_DURATION.observe(seconds)
    elif route == "git.upload_pack":
        PACK_GENERATION.observe(seconds)


def push_landed(refs: int) -> None:
    PUSHES_LANDED.inc()
    REFS_UPDATED.inc(refs)


class Listener:
    """The metrics endpoint, in the gunicorn master: a thread serving every worker's sum.

    Started once the workers' parent is ready; a forked worker closes its inherited copy
    of the listening socket at once, so only the master answers on it.
    """

    def __init__(self, host: str, port: int, directory: Path) -> None:
        self.host = host
        self.port = port
        self.directory = directory
        self._server = None

    def start(self) -> None:
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry, path=str(self.directory))
        try:
            self._server, _ = start_http_server(self.port, self.host, registry=registry)
        except OSError as error:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise SystemExit(
                f"hfgit: error: cannot serve metrics on {self.host}:{self.port}: "
                f"{error.strerror or error}. Choose another --metrics-bind."
            ) from None

    def close_inherited(self) -> None:
        """In a freshly forked worker: the socket is the master's, not ours."""
        if self._server is not None:
            self._server.socket.close()
            self._server = None

    def worker_exited(self, pid: int) -> None:
        multiprocess.mark_process_dead(pid, str(self.directory))

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        shutil.rmtree(self.directory, ignore_errors=True)
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR") == str(self.directory):
            del os.environ["PROMETHEUS_MULTIPROC_DIR"]
