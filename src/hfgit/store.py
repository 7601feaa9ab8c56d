"""Tables and the database connection (SQLAlchemy Core).

One code path for SQLite (the embedded default) and PostgreSQL (several gatekeepers
behind a load balancer). This module knows SQL and nothing of HTTP or tokens' format.
Times are stored as Unix seconds (float) so every backend compares them the same way.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from . import migrations

metadata = sa.MetaData()

accounts = sa.Table(
    "accounts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("hub_id", sa.String(24), nullable=False, unique=True),
    sa.Column("kind", sa.String(8), nullable=False),  # "user" | "org"
    sa.Column("name", sa.String(96), nullable=False),
    sa.Column("name_lower", sa.String(96), nullable=False, unique=True),
    sa.Column("fullname", sa.String(200), nullable=False, default=""),
    sa.Column("email", sa.String(320), nullable=True),
    sa.Column("password_hash", sa.String(200), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    #: Set by ``hfgit user disable``: the user's tokens and sessions stop working, and
    #: nothing of theirs is deleted. Read by the token lookup every request makes anyway.
    sa.Column("disabled_at", sa.Float, nullable=True),
)

memberships = sa.Table(
    "memberships",
    metadata,
    sa.Column("org_id", sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Index("ix_memberships_user", "user_id"),
)

repos = sa.Table(
    "repos",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("hub_id", sa.String(24), nullable=False, unique=True),
    sa.Column("type", sa.String(8), nullable=False),
    sa.Column("namespace_id", sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("name", sa.String(96), nullable=False),
    sa.Column("name_lower", sa.String(96), nullable=False),
    sa.Column("private", sa.Boolean, nullable=False),
    sa.Column("gated", sa.String(8), nullable=False, default="off"),
    sa.Column("creator_id", sa.ForeignKey("accounts.id", ondelete="SET NULL"), nullable=True),
    sa.Column("storage_id", sa.String(32), nullable=False, unique=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("type", "namespace_id", "name_lower", name="uq_repos_identity"),
)

access_grants = sa.Table(
    "access_grants",
    metadata,
    sa.Column("repo_id", sa.ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", sa.ForeignKey("accounts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("status", sa.String(10), nullable=False),  # pending | accepted | rejected
    sa.Column("fields", sa.JSON, nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

tokens = sa.Table(
    "tokens",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("owner_id", sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("display_name", sa.String(100), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    #: ``[{"type", "name", "permissions"}]``; a repository's scope also has ``"repo"``, the
    #: repository's ``hub_id``, which is what it matches (``"name"`` is only a label).
    sa.Column("scopes", sa.JSON, nullable=False),
    sa.Column("can_read_gated", sa.Boolean, nullable=False, default=False),
    sa.Column("digest", sa.String(64), nullable=False, unique=True),
    sa.Column("last4", sa.String(4), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("refreshed_at", sa.Float, nullable=True),
    sa.Column("expires_at", sa.Float, nullable=True),
    sa.Column("last_used_at", sa.Float, nullable=True),
    sa.UniqueConstraint("owner_id", "display_name", name="uq_tokens_owner_name"),
)

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("at", sa.Float, nullable=False),
    sa.Column("event", sa.String(32), nullable=False),
    sa.Column("user_id", sa.Integer, nullable=True),
    sa.Column("token_id", sa.Integer, nullable=True),
    sa.Column("repo_id", sa.Integer, nullable=True),
    sa.Column("detail", sa.JSON, nullable=True),
    sa.Index("ix_audit_at", "at"),
)

#: Which Git LFS objects each repository holds. Storage may keep one copy per oid, but
#: a repository only has an object once its bytes were uploaded to *that* repository.
lfs_objects = sa.Table(
    "lfs_objects",
    metadata,
    sa.Column("repo_id", sa.ForeignKey("repos.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("oid", sa.String(64), primary_key=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

#: Git LFS file locks: at most one per path in a repository, held by the user who made it.
#: AUTOINCREMENT on SQLite so the id of a released lock is never handed to a new one (a
#: late unlock request must not remove someone else's newer lock).
lfs_locks = sa.Table(
    "lfs_locks",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("repo_id", sa.ForeignKey("repos.id", ondelete="CASCADE"), nullable=False),
    sa.Column("path", sa.String(1024), nullable=False),
    sa.Column("ref", sa.String(1024), nullable=True),
    sa.Column("owner_id", sa.ForeignKey("accounts.id", ondelete="CASCADE"), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.UniqueConstraint("repo_id", "path", name="uq_lfs_locks_path"),
    sqlite_autoincrement=True,
)

#: Failed logins on the settings pages, shared by every worker for rate limiting.
login_failures = sa.Table(
    "login_failures",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("key", sa.String(200), nullable=False),  # "client:<addr>" | "account:<name>"
    sa.Column("at", sa.Float, nullable=False),
    sa.Index("ix_login_failures_key_at", "key", "at"),
)

server_settings = sa.Table(
    "server_settings",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.String(500), nullable=False),
)


class DatabaseUnavailable(RuntimeError):
    """The database cannot be reached; callers answer 503 rather than guess."""


class SchemaOutOfDate(RuntimeError):
    """The database's schema is not the one this release expects; the message says what to do."""


def _sqlite_pragmas(dbapi_connection, _record) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers (every git request) proceed while a writer commits; the busy
    # timeout makes concurrent writers from several processes wait instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.close()


def make_engine(url: str) -> Engine:
    """Create an engine for ``url``: ``sqlite:///path`` or ``postgresql+psycopg://…``."""
    if url.startswith("sqlite"):
        engine = sa.create_engine(url, connect_args={"check_same_thread": False, "timeout": 10})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    return sa.create_engine(url, pool_pre_ping=True, pool_size=10, max_overflow=10)


class Store:
    """The database: schema creation and connections that report outages uniformly."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.engine = make_engine(url)

    def upgrade(self, attempts: int = 5) -> None:
        """Migrate the schema to this release's, and create the server secret if missing.

        Idempotent. Several gatekeepers may start at once on a new database; the loser
        of that race fails on the winner's tables or secret, and finds them in place on
        its next try.
        """
        for attempt in range(1, attempts + 1):
            try:
                with self._schema_transaction() as conn:
                    migrations.upgrade(conn)
                    existing = conn.execute(
                        sa.select(server_settings.c.value).where(server_settings.c.key == "secret")
                    ).scalar()
                    if existing is None:
                        conn.execute(
                            server_settings.insert().values(
                                key="secret", value=secrets.token_hex(32)
                            )
                        )
                return
            except (sa.exc.IntegrityError, sa.exc.ProgrammingError, DatabaseUnavailable):
                if attempt == attempts:
                    raise
                time.sleep(0.05 * attempt)

    @contextmanager
    def _schema_transaction(self) -> Iterator[Connection]:
        """One transaction that holds the schema against every other upgrader.

        SQLite's Python driver runs DDL outside any transaction unless one is opened by
        hand; ``BEGIN IMMEDIATE`` also takes the write lock first, so a second upgrader
        waits and then finds the work done. PostgreSQL's DDL is transactional; an
        advisory lock does the waiting there.
        """
        try:
            with self.engine.connect() as conn:
                if self.engine.dialect.name == "sqlite":
                    conn.exec_driver_sql("BEGIN IMMEDIATE")
                elif self.engine.dialect.name == "postgresql":
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(7304170001)"))
                yield conn
                conn.commit()
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            raise DatabaseUnavailable("The database is unreachable.") from exc

    def revision(self) -> str | None:
        """The schema revision the database is at (None: an empty database)."""
        with self.begin() as conn:
            return migrations.current(conn)

    def require_current(self) -> None:
        """Raise :class:`SchemaOutOfDate` unless the schema is this release's."""
        found, wanted = self.revision(), migrations.head()
        if found == wanted:
            return
        if found is not None and not _known_revision(found):
            raise SchemaOutOfDate(
                f"The database is at revision {found}, from a newer hfgit than this one "
                f"(which knows up to {wanted}): run the newer hfgit."
            )
        state = "has no hfgit tables" if found is None else f"is at revision {found}"
        raise SchemaOutOfDate(
            f"The database {state}; this hfgit needs revision {wanted}. "
            "Run `hfgit db upgrade` (with the same --database-url) first."
        )

    @contextmanager
    def begin(self) -> Iterator[Connection]:
        """A transaction; connection failures become :class:`DatabaseUnavailable`."""
        try:
            with self.engine.begin() as conn:
                yield conn
        except (sa.exc.OperationalError, sa.exc.InterfaceError) as exc:
            # DB-API's OperationalError covers lost or refused connections, a locked or
            # unreadable SQLite file and a missing schema: none can be served right now.
            raise DatabaseUnavailable("The database is unreachable.") from exc

    def ping(self) -> bool:
        try:
            with self.begin() as conn:
                conn.execute(sa.text("SELECT 1"))
            return True
        except (DatabaseUnavailable, sa.exc.DBAPIError):
            return False

    def secret(self) -> bytes:
        with self.begin() as conn:
            value = conn.execute(
                sa.select(server_settings.c.value).where(server_settings.c.key == "secret")
            ).scalar_one()
        return bytes.fromhex(value)

    def dispose(self) -> None:
        self.engine.dispose()


def _known_revision(revision: str) -> bool:
    try:
        return migrations.known(revision)
    except Exception:  # alembic raises for revisions it cannot resolve at all
        return False
