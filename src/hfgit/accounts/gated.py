"""Gated repositories: who asked for access, and who was given it.

Audited: ``access.request`` (a user asks), ``access.grant`` (access given without a
request being handled), ``access.accepted``, ``access.rejected`` and ``access.pending``
(a request, or a user's access, moved to that status). ``detail`` names the user whose
access changed; the actor is whoever changed it.
"""

from __future__ import annotations

import hashlib
import time

import sqlalchemy as sa

from ..names import RepoId
from ..store import Store, access_grants, accounts
from .audit import AuditLog
from .errors import InvalidInput, NotFound
from .queries import GRANT_STATUS, account, require_repo
from .records import AccessRequest, Actor, RepoRecord

STATUSES = ("pending", "accepted", "rejected")

_REQUEST_QUERY = sa.select(
    access_grants,
    accounts.c.name,
    accounts.c.fullname,
    accounts.c.email,
    accounts.c.hub_id.label("user_hub_id"),
).join(accounts, accounts.c.id == access_grants.c.user_id)


class GatedAccess:
    def __init__(self, store: Store, audit: AuditLog) -> None:
        self.store = store
        self.audit = audit

    def set_access(
        self,
        repo_id: RepoId,
        user: str,
        status: str = "accepted",
        *,
        actor: Actor | None = None,
    ) -> None:
        """Put ``user``'s access to ``status`` directly, whether or not they asked."""
        if status not in STATUSES:
            raise InvalidInput(f"Invalid access status {status!r}.")
        with self.store.begin() as conn:
            record = require_repo(conn, repo_id)
            user_row = account(conn, user, "user")
            existing = conn.execute(
                GRANT_STATUS, {"repo_id": record.id, "user_id": user_row.id}
            ).scalar()
            _put_status(conn, record, user_row.id, status, existing=existing)
            event = "access.grant" if status == "accepted" else f"access.{status}"
            detail = {"user": user_row.name}
            self.audit.record(conn, event, actor=actor, repo_id=record.id, detail=detail)

    def request_access(self, repo_id: RepoId, user: str, *, actor: Actor | None = None) -> str:
        """Ask for access to a gated repo; ``auto`` gating accepts at once.

        Asking again changes nothing: an accepted or rejected request keeps its status.
        Returns the request's status.
        """
        now = time.time()
        with self.store.begin() as conn:
            record = _gated_repo(conn, repo_id)
            user_row = account(conn, user, "user")
            existing = conn.execute(
                GRANT_STATUS, {"repo_id": record.id, "user_id": user_row.id}
            ).scalar()
            if existing is not None:
                return existing
            status = "accepted" if record.facts.gated == "auto" else "pending"
            conn.execute(
                access_grants.insert().values(
                    repo_id=record.id,
                    user_id=user_row.id,
                    status=status,
                    created_at=now,
                    updated_at=now,
                )
            )
            detail = {"user": user_row.name, "status": status}
            self.audit.record(conn, "access.request", actor=actor, repo_id=record.id, detail=detail)
        return status

    def access_requests(self, repo_id: RepoId, status: str) -> list[AccessRequest]:
        if status not in STATUSES:
            raise InvalidInput(f"Invalid access status {status!r}.")
        with self.store.begin() as conn:
            record = _gated_repo(conn, repo_id)
            rows = conn.execute(
                _REQUEST_QUERY.where(
                    access_grants.c.repo_id == record.id, access_grants.c.status == status
                ).order_by(access_grants.c.created_at, accounts.c.name_lower)
            ).all()
        return [
            AccessRequest(
                request_id=_request_id(record, row.user_hub_id),
                user=row.name,
                fullname=row.fullname,
                email=row.email,
                status=row.status,
                created_at=row.created_at,
                updated_at=row.updated_at,
                fields=row.fields,
            )
            for row in rows
        ]

    def handle_access_request(
        self,
        repo_id: RepoId,
        status: str,
        *,
        user: str | None = None,
        request_id: str | None = None,
        actor: Actor | None = None,
    ) -> None:
        """Move an existing request to ``status``, naming it by user or by request id.

        As on the Hub, a request already in ``status`` is reported as not found.
        """
        if status not in STATUSES:
            raise InvalidInput(
                f"Invalid access status {status!r}: use accepted, rejected or pending."
            )
        if (user is None) == (request_id is None):
            raise InvalidInput("Name the request by exactly one of user or requestId.")
        with self.store.begin() as conn:
            record = _gated_repo(conn, repo_id)
            query = _REQUEST_QUERY.where(access_grants.c.repo_id == record.id)
            if user is not None:
                query = query.where(accounts.c.name_lower == user.lower())
            rows = conn.execute(query).all()
            if request_id is not None:
                rows = [r for r in rows if _request_id(record, r.user_hub_id) == request_id]
            who = user or request_id
            if not rows:
                raise NotFound(f"No access request from {who} for {repo_id.repo_id}.")
            row = rows[0]
            if row.status == status:
                raise NotFound(f"The access request from {who} is already {status}.")
            _put_status(conn, record, row.user_id, status, existing=row.status)
            detail = {"user": row.name}
            self.audit.record(
                conn, f"access.{status}", actor=actor, repo_id=record.id, detail=detail
            )

    def grant_access(self, repo_id: RepoId, user: str, *, actor: Actor | None = None) -> None:
        """Accept ``user`` without a request of theirs; refused if they already have access."""
        with self.store.begin() as conn:
            record = _gated_repo(conn, repo_id)
            user_row = account(conn, user, "user")
            status = conn.execute(
                GRANT_STATUS, {"repo_id": record.id, "user_id": user_row.id}
            ).scalar()
            if status == "accepted":
                raise InvalidInput(f"{user_row.name} already has access to {repo_id.repo_id}.")
            _put_status(conn, record, user_row.id, "accepted", existing=status)
            detail = {"user": user_row.name}
            self.audit.record(conn, "access.grant", actor=actor, repo_id=record.id, detail=detail)


def _gated_repo(conn: sa.Connection, repo_id: RepoId) -> RepoRecord:
    record = require_repo(conn, repo_id)
    if record.facts.gated == "off":
        raise InvalidInput(
            f"The {repo_id.type} {repo_id.repo_id} is not gated: enable gating "
            "(auto or manual) in its settings first."
        )
    return record


def _put_status(
    conn: sa.Connection, record: RepoRecord, user_id: int, status: str, *, existing: str | None
) -> None:
    """Set a grant's status; ``existing`` is its current one, None when there is no grant."""
    now = time.time()
    if existing is not None:
        conn.execute(
            access_grants.update()
            .where(access_grants.c.repo_id == record.id, access_grants.c.user_id == user_id)
            .values(status=status, updated_at=now)
        )
    else:
        conn.execute(
            access_grants.insert().values(
                repo_id=record.id, user_id=user_id, status=status, created_at=now, updated_at=now
            )
        )


def _request_id(repo: RepoRecord, user_hub_id: str) -> str:
    """A stable 24-hex id per (repo, user), so requests can be named without a username."""
    return hashlib.sha256(f"{repo.hub_id}:{user_hub_id}".encode()).hexdigest()[:24]
