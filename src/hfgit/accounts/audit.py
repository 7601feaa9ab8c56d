"""The audit log: one writer for every event, and the reader.

Each row says who acted in ``user_id``/``token_id`` (both empty for an administrator at
the command line), the repository concerned in ``repo_id``, and what else is worth
knowing (names, roles, statuses) in ``detail``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime

import sqlalchemy as sa

from ..names import RepoId
from ..store import Store, accounts, audit_log, repos, tokens
from .records import Actor

_actor = accounts.alias("actor")
_namespace = accounts.alias("namespace")

#: Every event, oldest first, with the names its ids have now (where the rows still exist).
_READ = (
    sa.select(
        audit_log,
        _actor.c.name.label("actor_name"),
        tokens.c.display_name.label("token_name"),
        repos.c.type.label("repo_type"),
        _namespace.c.name.label("repo_namespace"),
        repos.c.name.label("repo_name"),
    )
    .select_from(
        audit_log.outerjoin(_actor, _actor.c.id == audit_log.c.user_id)
        .outerjoin(tokens, tokens.c.id == audit_log.c.token_id)
        .outerjoin(repos, repos.c.id == audit_log.c.repo_id)
        .outerjoin(_namespace, _namespace.c.id == repos.c.namespace_id)
    )
    .order_by(audit_log.c.id)
)

#: The events that record the names of a repository or token, for ids whose row is gone.
_NAMED = sa.select(audit_log.c.repo_id, audit_log.c.detail).where(
    audit_log.c.event.like("repo.%") | audit_log.c.event.like("token.%")
)


@dataclass(frozen=True)
class AuditEntry:
    """One audit row as a person reads it: names, not ids.

    ``user`` and ``token_name`` are who acted; for a change an administrator made at the
    command line (no actor), the user and token the change concerns. ``detail`` is the
    row's own record (roles, statuses, the names it was written with).
    """

    at: float
    event: str
    user: str | None
    token_name: str | None
    repo: str | None
    admin: bool
    detail: dict = field(default_factory=dict)

    def lines(self) -> list[dict]:
        """The entry as JSON objects: one per ref for a push or commit of several refs."""
        base: dict = {"time": iso_time(self.at), "event": self.event}
        for key in ("user", "token_name", "repo"):
            if getattr(self, key) is not None:
                base[key] = getattr(self, key)
        if self.admin:
            base["admin"] = True
        shown = {"user": self.user, "token": self.token_name, "repo": self.repo}
        rest = {
            k: v
            for k, v in self.detail.items()
            if k not in ("refs", "token_id") and not (k in shown and shown[k] == v)
        }
        refs = self.detail.get("refs")
        updates = refs if isinstance(refs, list) and refs else [{}]
        lines = []
        for update in updates:
            line = dict(base)
            for key in ("ref", "old", "new"):
                value = update.get(key, rest.get(key)) if isinstance(update, dict) else None
                if value is not None:
                    line[key] = value
            extra = {k: v for k, v in rest.items() if k not in ("ref", "old", "new")}
            if extra:
                line["detail"] = extra
            lines.append(line)
        return lines


def iso_time(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat(timespec="seconds")


class AuditLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def record(
        conn: sa.Connection,
        event: str,
        *,
        actor: Actor | None,
        repo_id: int | None = None,
        detail: dict | None = None,
    ) -> None:
        """Write ``event`` in the caller's transaction: it lands with the change or not at all."""
        conn.execute(
            audit_log.insert().values(
                at=time.time(),
                event=event,
                user_id=actor.user_id if actor else None,
                token_id=actor.token_id if actor else None,
                repo_id=repo_id,
                detail=detail,
            )
        )

    def append(
        self,
        event: str,
        *,
        actor: Actor | None,
        repo_id: int | None = None,
        detail: dict | None = None,
    ) -> None:
        """Write ``event`` in a transaction of its own, for changes made outside this package
        (a push, a forced LFS unlock) that have already happened."""
        with self.store.begin() as conn:
            self.record(conn, event, actor=actor, repo_id=repo_id, detail=detail)

    def read(
        self,
        *,
        user: str | None = None,
        repo: RepoId | None = None,
        since: float | None = None,
    ) -> Iterator[AuditEntry]:
        """Events oldest first, optionally only those by or about ``user``, on ``repo``,
        or at ``since`` and later. Ids resolve to today's names; a deleted repository or
        token keeps the name its events recorded."""
        query = _READ if since is None else _READ.where(audit_log.c.at >= since)
        with self.store.begin() as conn:
            repo_names, token_names = _recorded_names(conn)
            rows = conn.execute(query).all()
        wanted_repo = str(repo).lower() if repo is not None else None
        for row in rows:
            entry = _entry(row, repo_names, token_names)
            if wanted_repo is not None and (entry.repo or "").lower() != wanted_repo:
                continue
            if user is not None and user.lower() not in _users_of(entry):
                continue
            yield entry

    def events(self, limit: int = 100) -> list[sa.Row]:
        """The latest ``limit`` events, newest first."""
        with self.store.begin() as conn:
            return conn.execute(
                sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
            ).all()


def _recorded_names(conn: sa.Connection) -> tuple[dict[int, str], dict[int, str]]:
    repo_names: dict[int, str] = {}
    token_names: dict[int, str] = {}
    for row in conn.execute(_NAMED):
        detail = row.detail or {}
        if row.repo_id is not None and isinstance(detail.get("repo"), str):
            repo_names[row.repo_id] = detail["repo"]
        if isinstance(detail.get("token_id"), int) and isinstance(detail.get("token"), str):
            token_names[detail["token_id"]] = detail["token"]
    return repo_names, token_names


def _entry(row: sa.Row, repo_names: dict[int, str], token_names: dict[int, str]) -> AuditEntry:
    detail = row.detail if isinstance(row.detail, dict) else {}
    repo = None
    if row.repo_name is not None:
        repo = str(RepoId(row.repo_type, row.repo_namespace, row.repo_name))
    elif row.repo_id is not None:
        repo = repo_names.get(row.repo_id, f"#{row.repo_id}")
    actor_token = row.token_name
    if actor_token is None and row.token_id is not None:
        actor_token = token_names.get(row.token_id, f"#{row.token_id}")
    actor = row.actor_name
    if actor is None and row.user_id is not None:
        actor = f"#{row.user_id}"
    admin = row.user_id is None and row.token_id is None
    user = actor if actor is not None else detail.get("user")
    token_name = detail.get("token") if row.event.startswith("token.") else None
    return AuditEntry(
        at=row.at,
        event=row.event,
        user=user,
        token_name=token_name or actor_token,
        repo=repo,
        admin=admin,
        detail=detail,
    )


def _users_of(entry: AuditEntry) -> set[str]:
    """The users an entry is by or about, lowercased, for ``--user``."""
    names = {entry.user, entry.detail.get("user"), entry.detail.get("owner")}
    return {name.lower() for name in names if isinstance(name, str)}
