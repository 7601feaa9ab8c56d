"""The audit log: one writer for every event, and the reader."""

from __future__ import annotations

import time

import sqlalchemy as sa

from ..store import Store, audit_log


class AuditLog:
    def __init__(self, store: Store) -> None:
        self.store = store

    @staticmethod
    def record(
        conn: sa.Connection,
        event: str,
        *,
        user_id: int | None = None,
        token_id: int | None = None,
        repo_id: int | None = None,
        detail: dict | None = None,
    ) -> None:
        """Write ``event`` in the caller's transaction: it lands with the change or not at all."""
        conn.execute(
            audit_log.insert().values(
                at=time.time(),
                event=event,
                user_id=user_id,
                token_id=token_id,
                repo_id=repo_id,
                detail=detail,
            )
        )

    def append(
        self,
        event: str,
        *,
        user_id: int | None = None,
        token_id: int | None = None,
        repo_id: int | None = None,
        detail: dict | None = None,
    ) -> None:
        """Write ``event`` in a transaction of its own, for changes made outside this package."""
        with self.store.begin() as conn:
            self.record(
                conn, event, user_id=user_id, token_id=token_id, repo_id=repo_id, detail=detail
            )

    def events(self, limit: int = 100) -> list[sa.Row]:
        """The latest ``limit`` events, newest first."""
        with self.store.begin() as conn:
            return conn.execute(
                sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
            ).all()
