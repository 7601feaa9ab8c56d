"""The audit log: one writer for every event, and the reader.

Each row says who acted in ``user_id``/``token_id`` (both empty for an administrator at
the command line), the repository concerned in ``repo_id``, and what else is worth
knowing (names, roles, statuses) in ``detail``.
"""

from __future__ import annotations

import time

import sqlalchemy as sa

from ..store import Store, audit_log
from .records import Actor


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

    def events(self, limit: int = 100) -> list[sa.Row]:
        """The latest ``limit`` events, newest first."""
        with self.store.begin() as conn:
            return conn.execute(
                sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
            ).all()
