"""Queries and row conversions that several parts of the package share.

The statements git requests run are built once, at import, and executed with bind
parameters: building a statement and its cache key costs more than running it on SQLite
(bench/gate_bench.py --part auth).
"""

from __future__ import annotations

import secrets

import sqlalchemy as sa

from .. import policy
from ..names import RepoId
from ..store import access_grants, accounts, repos
from .errors import NotFound
from .records import RepoRecord, TokenRecord

_creator = accounts.alias("creator")
REPO_QUERY = (
    sa.select(
        repos,
        accounts.c.name.label("ns_name"),
        accounts.c.kind.label("ns_kind"),
        _creator.c.name.label("creator_name"),
    )
    .join(accounts, accounts.c.id == repos.c.namespace_id)
    .outerjoin(_creator, _creator.c.id == repos.c.creator_id)
)
REPO_BY_IDENTITY = REPO_QUERY.where(
    repos.c.type == sa.bindparam("type"),
    accounts.c.name_lower == sa.bindparam("namespace"),
    repos.c.name_lower == sa.bindparam("name"),
)
GRANT_STATUS = sa.select(access_grants.c.status).where(
    access_grants.c.repo_id == sa.bindparam("repo_id"),
    access_grants.c.user_id == sa.bindparam("user_id"),
)


def new_hub_id() -> str:
    """The 24-hex ``_id`` the Hub gives every user, organization and repository."""
    return secrets.token_hex(12)


def account(conn: sa.Connection, name: str, kind: str | None = None) -> sa.Row:
    """The user or organization named ``name`` (of ``kind`` when given), or NotFound."""
    query = sa.select(accounts).where(accounts.c.name_lower == name.lower())
    row = conn.execute(query).first()
    if row is None or (kind is not None and row.kind != kind):
        what = {"user": "user", "org": "organization"}.get(kind or "", "user or organization")
        raise NotFound(f"No {what} named {name!r}.")
    return row


def repo_record(row: sa.Row) -> RepoRecord:
    """A row of :data:`REPO_QUERY` as a record."""
    facts = policy.RepoFacts(
        type=row.type,
        namespace=row.ns_name,
        name=row.name,
        private=row.private,
        gated=row.gated,
        namespace_is_org=row.ns_kind == "org",
        creator=row.creator_name,
        hub_id=row.hub_id,
    )
    return RepoRecord(row.id, row.hub_id, facts, row.storage_id, row.created_at)


def find_repo(conn: sa.Connection, repo_id: RepoId) -> RepoRecord | None:
    row = conn.execute(
        REPO_BY_IDENTITY,
        {
            "type": repo_id.type,
            "namespace": repo_id.namespace.lower(),
            "name": repo_id.name.lower(),
        },
    ).first()
    return None if row is None else repo_record(row)


def require_repo(conn: sa.Connection, repo_id: RepoId) -> RepoRecord:
    record = find_repo(conn, repo_id)
    if record is None:
        raise NotFound(f"No {repo_id.type} named {repo_id.repo_id}.")
    return record


def token_record(row: sa.Row) -> TokenRecord:
    """A row of the tokens table as a record (without its digest)."""
    return TokenRecord(
        id=row.id,
        name=row.display_name,
        role=row.role,
        scopes=tuple(
            policy.Scope(
                item["type"], item["name"], frozenset(item["permissions"]), item.get("repo")
            )
            for item in row.scopes
        ),
        can_read_gated=row.can_read_gated,
        last4=row.last4,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
    )
