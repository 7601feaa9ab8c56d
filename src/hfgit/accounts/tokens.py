"""User access tokens: create, list, refresh and delete; and fine-grained scopes.

The secret is returned once, at creation or refresh; only its digest is stored. The
token format itself (shape, checksum, digest) is :mod:`hfgit.tokens`. A scope on a
repository is stored with the repository's ``hub_id`` and matched by it
(:class:`hfgit.policy.Scope`); what it shows is the repository's current name.

Audited: ``token.create``, ``token.refresh``, ``token.delete``, with the owner, the
token's name and id in ``detail`` (the actor may be someone else: an administrator).
Each use is audited by :mod:`.lookups` as ``token.use``.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Sequence
from dataclasses import replace

import sqlalchemy as sa

from .. import names, policy
from .. import tokens as token_format
from ..names import REPO_TYPES, RepoId
from ..store import Store, accounts, repos
from ..store import tokens as token_table
from .audit import AuditLog
from .errors import Conflict, InvalidInput, NotFound
from .queries import account, find_repo, token_record
from .records import Actor, TokenRecord


def parse_scope(text: str) -> policy.Scope:
    """Parse ``KIND:ENTITY=PERM[,PERM]``, e.g. ``model:alice/bert=repo.write``."""
    head, sep, perms = text.partition("=")
    kind, colon, entity = head.partition(":")
    if not sep or not colon or not entity:
        raise InvalidInput(
            f"Invalid scope {text!r}: use KIND:ENTITY=PERM[,PERM], e.g. "
            "model:alice/bert=repo.content.read or org:acme=repo.write."
        )
    permissions = frozenset(p.strip() for p in perms.split(",") if p.strip())
    return make_scope(kind, entity, permissions)


def make_scope(kind: str, entity: str, permissions: Iterable[str]) -> policy.Scope:
    permissions = frozenset(permissions)
    if kind not in policy.SCOPE_KINDS:
        raise InvalidInput(
            f"Invalid scope kind {kind!r}: use one of {', '.join(policy.SCOPE_KINDS)}."
        )
    unknown = permissions - set(policy.PERMISSIONS)
    if unknown or not permissions:
        raise InvalidInput(
            f"Invalid permissions {sorted(unknown) or '(none)'} in scope {kind}:{entity}: "
            f"use {' and/or '.join(policy.PERMISSIONS)}."
        )
    try:
        if kind in ("user", "org"):
            names.check_namespace(entity)
        else:
            RepoId.parse(entity, kind)
    except names.InvalidName as exc:
        raise InvalidInput(str(exc)) from None
    return policy.Scope(kind, entity, permissions)


def _scopes_to_json(scopes: Iterable[policy.Scope]) -> list[dict]:
    return [
        {
            "type": s.kind,
            "name": s.name,
            "permissions": sorted(s.permissions),
            **({"repo": s.repo} if s.kind in REPO_TYPES else {}),
        }
        for s in scopes
    ]


def _current_names(conn: sa.Connection, record: TokenRecord) -> TokenRecord:
    """``record`` with each repository scope labelled by its repository's name now.

    A scope holds the repository's identity; its stored name is the one it had when the
    token was made, kept only for a repository that no longer exists.
    """
    ids = {scope.repo for scope in record.scopes if scope.repo is not None}
    if not ids:
        return record
    rows = conn.execute(
        sa.select(repos.c.hub_id, accounts.c.name.label("ns"), repos.c.name)
        .join(accounts, accounts.c.id == repos.c.namespace_id)
        .where(repos.c.hub_id.in_(ids))
    )
    names_now = {row.hub_id: f"{row.ns}/{row.name}" for row in rows}
    scopes = tuple(
        replace(scope, name=names_now.get(scope.repo, scope.name)) if scope.repo else scope
        for scope in record.scopes
    )
    return replace(record, scopes=scopes)


class Tokens:
    def __init__(self, store: Store, token_key: bytes | None, audit: AuditLog) -> None:
        self.store = store
        self.token_key = token_key
        self.audit = audit

    def create(
        self,
        user: str,
        name: str,
        role: str,
        *,
        scopes: Sequence[policy.Scope] = (),
        can_read_gated: bool = False,
        expires_in_days: float | None = None,
        actor: Actor | None = None,
    ) -> tuple[str, TokenRecord]:
        """Create a token; the secret is returned here once and never stored."""
        name = name.strip()
        if not name or len(name) > 100 or any(ord(c) < 32 for c in name):
            raise InvalidInput("A token name needs 1 to 100 printable characters.")
        if role not in policy.TOKEN_ROLES:
            raise InvalidInput(
                f"Invalid role {role!r}: use one of {', '.join(policy.TOKEN_ROLES)}."
            )
        if role != "fineGrained" and (scopes or can_read_gated):
            raise InvalidInput("Scopes and can-read-gated apply only to fineGrained tokens.")
        if role == "fineGrained" and not scopes and not can_read_gated:
            raise InvalidInput("A fineGrained token needs at least one scope.")
        if expires_in_days is not None and expires_in_days <= 0:
            raise InvalidInput("The expiry must be a positive number of days.")
        secret = token_format.generate()
        now = time.time()
        with self.store.begin() as conn:
            owner = account(conn, user, "user")
            scopes = _check_scopes(conn, owner, scopes)
            if _token_row(conn, owner.id, name, missing_ok=True) is not None:
                raise Conflict(f"{owner.name} already has a token named {name!r}.")
            conn.execute(
                token_table.insert().values(
                    owner_id=owner.id,
                    display_name=name,
                    role=role,
                    scopes=_scopes_to_json(scopes),
                    can_read_gated=can_read_gated,
                    digest=token_format.digest(secret, self.token_key),
                    last4=token_format.last4(secret),
                    created_at=now,
                    expires_at=now + expires_in_days * 86400 if expires_in_days else None,
                )
            )
            record = token_record(_token_row(conn, owner.id, name))
            detail = {**_token_detail(owner, record.id, name), "role": role}
            self.audit.record(conn, "token.create", actor=actor, detail=detail)
        return secret, record

    def list(self, user: str) -> list[TokenRecord]:
        with self.store.begin() as conn:
            owner = account(conn, user, "user")
            rows = conn.execute(
                sa.select(token_table)
                .where(token_table.c.owner_id == owner.id)
                .order_by(token_table.c.created_at, token_table.c.id)
            )
            return [_current_names(conn, token_record(row)) for row in rows]

    def get(self, user: str, token_id: int) -> TokenRecord | None:
        """``user``'s token with that id; None when it is missing or someone else's."""
        with self.store.begin() as conn:
            owner = account(conn, user, "user")
            row = conn.execute(
                sa.select(token_table).where(
                    token_table.c.id == token_id, token_table.c.owner_id == owner.id
                )
            ).first()
            return None if row is None else _current_names(conn, token_record(row))

    def refresh(self, user: str, name: str, *, actor: Actor | None = None) -> str:
        """Give the token a new secret; the old one stops working at once."""
        secret = token_format.generate()
        with self.store.begin() as conn:
            owner = account(conn, user, "user")
            row = _token_row(conn, owner.id, name)
            conn.execute(
                token_table.update()
                .where(token_table.c.id == row.id)
                .values(
                    digest=token_format.digest(secret, self.token_key),
                    last4=token_format.last4(secret),
                    refreshed_at=time.time(),
                )
            )
            detail = _token_detail(owner, row.id, name)
            self.audit.record(conn, "token.refresh", actor=actor, detail=detail)
        return secret

    def delete(self, user: str, name: str, *, actor: Actor | None = None) -> None:
        with self.store.begin() as conn:
            owner = account(conn, user, "user")
            row = _token_row(conn, owner.id, name)
            conn.execute(token_table.delete().where(token_table.c.id == row.id))
            detail = _token_detail(owner, row.id, name)
            self.audit.record(conn, "token.delete", actor=actor, detail=detail)


def _token_detail(owner: sa.Row, token_id: int, name: str) -> dict:
    return {"user": owner.name, "token": name, "token_id": token_id}


def _check_scopes(
    conn: sa.Connection, owner: sa.Row, scopes: Sequence[policy.Scope]
) -> list[policy.Scope]:
    """The scopes, each checked against what exists, a repository's bound to its identity."""
    checked = []
    for scope in scopes:
        if scope.kind == "user":
            if scope.name.lower() != owner.name_lower:
                raise InvalidInput(
                    f"A user scope can only name the token owner's own namespace "
                    f"({owner.name}), not {scope.name!r}."
                )
        elif scope.kind == "org":
            account(conn, scope.name, "org")
        else:
            record = find_repo(conn, RepoId.parse(scope.name, scope.kind))
            if record is None:
                raise NotFound(f"No {scope.kind} named {scope.name} for the scope.")
            scope = replace(scope, name=record.facts.repo_id, repo=record.hub_id)
        checked.append(scope)
    return checked


def _token_row(
    conn: sa.Connection, owner_id: int, name: str, *, missing_ok: bool = False
) -> sa.Row | None:
    row = conn.execute(
        sa.select(token_table).where(
            token_table.c.owner_id == owner_id, token_table.c.display_name == name
        )
    ).first()
    if row is None and not missing_ok:
        raise NotFound(f"No token named {name!r}.")
    return row
