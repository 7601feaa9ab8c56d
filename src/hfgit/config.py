"""Server settings: where data lives, which database, and the limits on requests."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

MiB = 1024 * 1024
GIT_ENGINES = ("auto", "git", "dulwich")


def default_data_dir() -> Path:
    base = os.environ.get("XDG_DATA_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "share"
    )
    return Path(base) / "hfgit"


#: gunicorn worker classes ``hfgit serve`` can run (``Settings.worker``).
WORKERS = ("front", "gthread")


def default_database_url(data_dir: Path) -> str:
    return f"sqlite:///{data_dir / 'hfgit.db'}"


@dataclass(frozen=True)
class Settings:
    data_dir: Path
    database_url: str
    #: Optional key for token digests, kept outside the database so a leaked database
    #: alone cannot be used to confirm a guessed token.
    token_key: bytes | None = None
    #: Largest receive-pack body after decompression (the pack git pushes).
    max_push_bytes: int = 2048 * MiB
    #: Largest upload-pack body after decompression (wants and haves only).
    max_fetch_request_bytes: int = 10 * MiB
    #: Largest pack one push may send (git's ``receive.maxInputSize``).
    max_pack_bytes: int = 2048 * MiB
    #: Largest file a push may carry outside Git LFS, as on the Hub.
    max_blob_bytes: int = 10 * MiB
    #: Largest object a pack may inflate to (a blob stored whole or a delta's result);
    #: checked from the pack's headers before inflating, so a "zlib bomb" costs nothing.
    #: Blobs between ``max_blob_bytes`` and this still get the Git LFS message.
    max_object_bytes: int = 100 * MiB
    #: Most ref updates (branches, tags) one push may make.
    max_ref_updates: int = 1000
    #: Most ``want`` and ``have`` lines one fetch request may send.
    max_want_lines: int = 10_000
    max_have_lines: int = 100_000
    #: Age in seconds after which a ref ``*.lock`` left by a crashed writer is removed.
    stale_lock_seconds: int = 300
    #: Seconds a git request body may stay silent before the server gives up on it.
    body_read_timeout: int = 60
    #: Largest Git LFS object accepted (the Hub's own limit is 50 GB per file).
    lfs_max_object_bytes: int = 50 * 1000**3
    #: Most objects one LFS batch request may name; git-lfs sends 100 at a time.
    lfs_max_batch_objects: int = 1000
    #: Where LFS objects live: "local" (under ``<data-dir>/lfs``) or "s3".
    lfs_storage: str = "local"
    #: S3-compatible endpoint (None: AWS itself); credentials come from boto3's usual chain.
    lfs_s3_endpoint: str | None = None
    lfs_s3_bucket: str | None = None
    #: Seconds a signed LFS transfer URL stays valid.
    lfs_url_ttl: int = 3600
    #: Believe X-Forwarded-For/-Proto/-Host from one reverse proxy (session cookies get
    #: ``Secure`` behind a TLS-terminating proxy). Off: a client could forge them.
    trust_proxy: bool = False
    #: Failed settings-page logins allowed per client address, and per account, within
    #: ``login_window`` seconds; the block lifts when the window slides past them.
    login_max_failures_client: int = 20
    login_max_failures_account: int = 10
    login_window: int = 900

    #: A push leaves its repository to be repacked, in the background, once it holds more
    #: packs than this or more loose objects than ``repack_loose_objects``.
    repack_packs: int = 20
    repack_loose_objects: int = 1000

    #: The engine that answers git's two services (``hfgit.server.git.engines``):
    #: ``git`` (C git for fetches), ``dulwich``, or ``auto`` (git when on PATH).
    git_engine: str = "auto"
    #: Most pack generations (C git's ``pack-objects``) at once on this host.
    max_pack_processes: int = os.cpu_count() or 1

    #: Failed token authentications (git, API, LFS) allowed per client address and per
    #: presented token within ``auth_window`` seconds before the gate answers 429.
    auth_max_failures_client: int = 100
    auth_max_failures_token: int = 20
    auth_window: int = 600

    #: The URL clients reach this server at (``https://git.example.com``): the base of
    #: every absolute URL it hands out (``hfgit.server.urls``). None: see ``listen_url``.
    public_url: str | None = None
    #: ``http://host:port`` that ``hfgit serve`` listens on; it sets this itself.
    listen_url: str | None = None

    #: The crash sweep (``hfgit.server.git.sweep``) removes leftovers of killed pushes,
    #: repacks and uploads older than ``sweep_grace_seconds``, at start and every
    #: ``sweep_interval`` seconds in each worker.
    sweep_grace_seconds: int = 600
    sweep_interval: int = 3600

    #: Seconds a client has to send a request's headers, from their first byte, and
    #: the whole request (headers and body), before it gets 408 (``hfgit.front``).
    header_timeout: int = 30
    request_timeout: int = 3600
    #: Connections one client address may hold open, and requests it may have in
    #: service, per worker process: past them, the connection is closed or gets 429.
    max_connections_per_client: int = 64
    max_requests_per_client: int = 8
    #: Seconds a stopping server (SIGTERM) gives requests in flight to finish.
    shutdown_grace: int = 30
    #: gunicorn's worker: ``front`` (hfgit's, reads each request whole before a thread
    #: serves it) or ``gthread`` (gunicorn's own, a thread per request as it arrives;
    #: kept as the fallback, without the front's timeouts and per-client caps).
    worker: str = "front"

    @property
    def embedded_database(self) -> bool:
        """True for the SQLite file hfgit keeps in its data directory when none is configured:
        hfgit upgrades that one itself; an operator upgrades any other (``hfgit db upgrade``)."""
        return self.database_url == default_database_url(self.data_dir)

    @property
    def repos_dir(self) -> Path:
        return self.data_dir / "repos"

    @property
    def lfs_dir(self) -> Path:
        return self.data_dir / "lfs"

    @classmethod
    def load(
        cls, data_dir: str | os.PathLike | None = None, database_url: str | None = None
    ) -> Settings:
        """Settings from arguments, falling back to ``HFGIT_*`` variables, then defaults."""
        directory = Path(data_dir or os.environ.get("HFGIT_DATA_DIR") or default_data_dir())
        directory = directory.expanduser().absolute()
        url = (
            database_url or os.environ.get("HFGIT_DATABASE_URL") or default_database_url(directory)
        )
        key = os.environ.get("HFGIT_TOKEN_KEY")
        return cls(
            data_dir=directory,
            database_url=url,
            token_key=key.encode() if key else None,
            max_push_bytes=_env_int("HFGIT_MAX_PUSH_BYTES", cls.max_push_bytes),
            max_fetch_request_bytes=_env_int(
                "HFGIT_MAX_FETCH_REQUEST_BYTES", cls.max_fetch_request_bytes
            ),
            max_pack_bytes=_env_int("HFGIT_MAX_PACK_BYTES", cls.max_pack_bytes),
            max_blob_bytes=_env_int("HFGIT_MAX_BLOB_BYTES", cls.max_blob_bytes),
            max_object_bytes=_env_int("HFGIT_MAX_OBJECT_BYTES", cls.max_object_bytes),
            max_ref_updates=_env_int("HFGIT_MAX_REF_UPDATES", cls.max_ref_updates),
            max_want_lines=_env_int("HFGIT_MAX_WANT_LINES", cls.max_want_lines),
            max_have_lines=_env_int("HFGIT_MAX_HAVE_LINES", cls.max_have_lines),
            stale_lock_seconds=_env_int("HFGIT_STALE_LOCK_SECONDS", cls.stale_lock_seconds),
            repack_packs=_env_int("HFGIT_REPACK_PACKS", cls.repack_packs),
            repack_loose_objects=_env_int("HFGIT_REPACK_LOOSE_OBJECTS", cls.repack_loose_objects),
            body_read_timeout=_env_int("HFGIT_BODY_READ_TIMEOUT", cls.body_read_timeout),
            lfs_max_object_bytes=_env_int("HFGIT_LFS_MAX_OBJECT_BYTES", cls.lfs_max_object_bytes),
            lfs_max_batch_objects=_env_int(
                "HFGIT_LFS_MAX_BATCH_OBJECTS", cls.lfs_max_batch_objects
            ),
            lfs_storage=_env_choice("HFGIT_LFS_STORAGE", ("local", "s3"), cls.lfs_storage),
            lfs_s3_endpoint=os.environ.get("HFGIT_LFS_S3_ENDPOINT") or None,
            lfs_s3_bucket=os.environ.get("HFGIT_LFS_S3_BUCKET") or None,
            lfs_url_ttl=_env_int("HFGIT_LFS_URL_TTL", cls.lfs_url_ttl),
            trust_proxy=_env_choice("HFGIT_TRUST_PROXY", ("0", "1"), "0") == "1",
            login_max_failures_client=_env_int(
                "HFGIT_LOGIN_MAX_FAILURES_CLIENT", cls.login_max_failures_client
            ),
            login_max_failures_account=_env_int(
                "HFGIT_LOGIN_MAX_FAILURES_ACCOUNT", cls.login_max_failures_account
            ),
            login_window=_env_int("HFGIT_LOGIN_WINDOW", cls.login_window),
            git_engine=_env_choice("HFGIT_GIT_ENGINE", GIT_ENGINES, cls.git_engine),
            max_pack_processes=_env_int("HFGIT_MAX_PACK_PROCESSES", cls.max_pack_processes),
            auth_max_failures_client=_env_int(
                "HFGIT_AUTH_MAX_FAILURES_CLIENT", cls.auth_max_failures_client
            ),
            auth_max_failures_token=_env_int(
                "HFGIT_AUTH_MAX_FAILURES_TOKEN", cls.auth_max_failures_token
            ),
            auth_window=_env_int("HFGIT_AUTH_WINDOW", cls.auth_window),
            # HFGIT_LFS_PUBLIC_URL is the name of earlier releases, kept as an alias.
            public_url=parse_public_url(
                os.environ.get("HFGIT_PUBLIC_URL") or os.environ.get("HFGIT_LFS_PUBLIC_URL")
            ),
            sweep_grace_seconds=_env_int("HFGIT_SWEEP_GRACE_SECONDS", cls.sweep_grace_seconds),
            sweep_interval=_env_int("HFGIT_SWEEP_INTERVAL", cls.sweep_interval),
            header_timeout=_env_int("HFGIT_HEADER_TIMEOUT", cls.header_timeout),
            request_timeout=_env_int("HFGIT_REQUEST_TIMEOUT", cls.request_timeout),
            max_connections_per_client=_env_int(
                "HFGIT_MAX_CONNECTIONS_PER_CLIENT", cls.max_connections_per_client
            ),
            max_requests_per_client=_env_int(
                "HFGIT_MAX_REQUESTS_PER_CLIENT", cls.max_requests_per_client
            ),
            shutdown_grace=_env_int("HFGIT_SHUTDOWN_GRACE", cls.shutdown_grace),
            worker=_env_choice("HFGIT_WORKER", WORKERS, cls.worker),
        )


def parse_public_url(value: str | None) -> str | None:
    """A configured public URL, checked: ``http(s)://host[:port][/prefix]``, no trailing ``/``."""
    if not value:
        return None
    parts = urlsplit(value)
    if parts.username is not None or parts.password is not None:
        raise ValueError("The public URL must not carry a username or password.")
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.query or parts.fragment:
        raise ValueError(
            f"The public URL (HFGIT_PUBLIC_URL, --public-url) must look like "
            f"https://git.example.com[/prefix], not {value!r}."
        )
    return value.rstrip("/")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None:
        return default
    try:
        number = int(value)
    except ValueError:
        raise ValueError(f"{name} must be a whole number, not {value!r}.") from None
    if number <= 0:
        raise ValueError(f"{name} must be positive, not {value!r}.")
    return number


def _env_choice(name: str, choices: tuple[str, ...], default: str) -> str:
    value = os.environ.get(name) or default
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, not {value!r}.")
    return value
