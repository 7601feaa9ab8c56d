"""Fine-grained scopes on a repository name it by identity: its ``hub_id`` in ``"repo"``.

Until now a scope matched the text ``ns/name``, so a repository created later under a
deleted or moved repository's name was covered by tokens made for the old one. Each
existing repository scope is resolved here, once, to the repository that has its name
now (type, namespace and name compared without case, as lookups do); a scope whose name
matches nothing gets ``"repo": null`` and keeps matching nothing. ``"name"`` stays as
the label shown when the repository is gone.

Compatible with the previous release: it still reads ``type``, ``name`` and
``permissions`` and ignores the new key; tokens it creates during a rolling upgrade have
no ``"repo"`` and match nothing once the new release serves (recreate them).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

REPO_KINDS = ("model", "dataset", "space")

_accounts = sa.table("accounts", sa.column("id"), sa.column("name_lower"))
_repos = sa.table(
    "repos",
    sa.column("hub_id"),
    sa.column("type"),
    sa.column("namespace_id"),
    sa.column("name_lower"),
)
_tokens = sa.table("tokens", sa.column("id"), sa.column("scopes", sa.JSON))


def upgrade() -> None:
    conn = op.get_bind()
    identity = {
        (row.type, row.ns, row.name): row.hub_id
        for row in conn.execute(
            sa.select(
                _repos.c.hub_id,
                _repos.c.type,
                _accounts.c.name_lower.label("ns"),
                _repos.c.name_lower.label("name"),
            ).join(_accounts, _accounts.c.id == _repos.c.namespace_id)
        )
    }
    for token in conn.execute(sa.select(_tokens.c.id, _tokens.c.scopes)).all():
        scopes = [_with_identity(scope, identity) for scope in token.scopes]
        if scopes != token.scopes:
            conn.execute(_tokens.update().where(_tokens.c.id == token.id).values(scopes=scopes))


def _with_identity(scope: dict, identity: dict) -> dict:
    if scope.get("type") not in REPO_KINDS or "repo" in scope:
        return scope
    namespace, _, name = str(scope.get("name", "")).lower().partition("/")
    return {**scope, "repo": identity.get((scope["type"], namespace, name))}


def downgrade() -> None:
    conn = op.get_bind()
    for token in conn.execute(sa.select(_tokens.c.id, _tokens.c.scopes)).all():
        scopes = [{k: v for k, v in scope.items() if k != "repo"} for scope in token.scopes]
        conn.execute(_tokens.update().where(_tokens.c.id == token.id).values(scopes=scopes))
