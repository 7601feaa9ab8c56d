"""Users and organizations: accounts, passwords and memberships.

Audited: ``user.create``, ``user.disable``, ``user.enable``, ``user.delete``,
``password.set``, ``org.create``, ``member.set``, ``member.remove``.
"""

from __future__ import annotations

import hashlib
import time

import sqlalchemy as sa
from passlib.hash import argon2

from .. import names, policy
from ..names import RepoId
from ..store import Store, access_grants, lfs_locks, memberships, repos, tokens
from ..store import accounts as account_table
from .audit import AuditLog
from .errors import Conflict, InvalidInput, NotFound
from .queries import account, find_repo, new_hub_id
from .records import Actor


class Users:
    def __init__(self, store: Store, audit: AuditLog) -> None:
        self.store = store
        self.audit = audit

    def _create_account(
        self, kind: str, name: str, *, actor: Actor | None, **values: object
    ) -> None:
        try:
            names.check_namespace(name)
        except names.InvalidName as exc:
            raise InvalidInput(str(exc)) from None
        with self.store.begin() as conn:
            taken = conn.execute(
                sa.select(account_table.c.kind).where(account_table.c.name_lower == name.lower())
            ).scalar()
            if taken:
                raise Conflict(f"The name {name!r} is already taken by a {taken}.")
            conn.execute(
                account_table.insert().values(
                    hub_id=new_hub_id(),
                    kind=kind,
                    name=name,
                    name_lower=name.lower(),
                    fullname=values.get("fullname") or name,
                    email=values.get("email"),
                    password_hash=values.get("password_hash"),
                    created_at=time.time(),
                )
            )
            self.audit.record(conn, f"{kind}.create", actor=actor, detail={kind: name})

    def create_user(
        self,
        name: str,
        password: str | None = None,
        *,
        fullname: str = "",
        email: str | None = None,
        actor: Actor | None = None,
    ) -> None:
        password_hash = argon2.hash(_check_password(password)) if password is not None else None
        self._create_account(
            "user", name, actor=actor, fullname=fullname, email=email, password_hash=password_hash
        )

    def set_password(self, user: str, password: str, *, actor: Actor | None = None) -> None:
        password_hash = argon2.hash(_check_password(password))
        with self.store.begin() as conn:
            row = account(conn, user, "user")
            conn.execute(
                account_table.update()
                .where(account_table.c.id == row.id)
                .values(password_hash=password_hash)
            )
            self.audit.record(conn, "password.set", actor=actor, detail={"user": row.name})

    def verify_password(self, user: str, password: str) -> str | None:
        """Return the canonical user name when ``password`` is right, else None."""
        with self.store.begin() as conn:
            row = conn.execute(
                sa.select(account_table.c.name, account_table.c.password_hash).where(
                    account_table.c.name_lower == user.lower(), account_table.c.kind == "user"
                )
            ).first()
        if row is None or not row.password_hash:
            argon2.hash(password)  # spend the same time whether or not the user exists
            return None
        return row.name if argon2.verify(password, row.password_hash) else None

    def set_disabled(self, user: str, disabled: bool, *, actor: Actor | None = None) -> bool:
        """Disable or enable ``user``; whether that changed anything.

        A disabled user's tokens and sessions are refused from the next request on
        (the token lookup reads ``disabled_at``); nothing of theirs is deleted, so
        enabling them again restores every token as it was.
        """
        with self.store.begin() as conn:
            row = account(conn, user, "user")
            if (row.disabled_at is not None) == disabled:
                return False
            conn.execute(
                account_table.update()
                .where(account_table.c.id == row.id)
                .values(disabled_at=time.time() if disabled else None)
            )
            event = "user.disable" if disabled else "user.enable"
            self.audit.record(conn, event, actor=actor, detail={"user": row.name})
        return True

    def delete_user(self, user: str, *, actor: Actor | None = None) -> None:
        """Delete ``user`` with their tokens, memberships, grants and locks.

        Repositories in their namespace are not deleted with them: each must be moved or
        deleted first, so no one loses data by removing an account.
        """
        with self.store.begin() as conn:
            row = account(conn, user, "user")
            owned = conn.execute(
                sa.select(repos.c.type, repos.c.name)
                .where(repos.c.namespace_id == row.id)
                .order_by(repos.c.type, repos.c.name_lower)
            ).all()
            if owned:
                listed = ", ".join(f"{r.type} {row.name}/{r.name}" for r in owned)
                raise Conflict(
                    f"{row.name} still owns {len(owned)} repositor"
                    f"{'y' if len(owned) == 1 else 'ies'} ({listed}): move each with "
                    "`hfgit repo move` or delete it with `hfgit repo delete` first."
                )
            # Deleted here rather than left to ON DELETE CASCADE, so nothing depends on
            # a connection's foreign-key setting; repositories they created in an
            # organization keep no creator (SET NULL).
            for column in (
                tokens.c.owner_id,
                memberships.c.user_id,
                access_grants.c.user_id,
                lfs_locks.c.owner_id,
            ):
                conn.execute(column.table.delete().where(column == row.id))
            conn.execute(repos.update().where(repos.c.creator_id == row.id).values(creator_id=None))
            conn.execute(account_table.delete().where(account_table.c.id == row.id))
            self.audit.record(conn, "user.delete", actor=actor, detail={"user": row.name})

    def list_users(self) -> list[sa.Row]:
        with self.store.begin() as conn:
            return conn.execute(
                sa.select(account_table)
                .where(account_table.c.kind == "user")
                .order_by(account_table.c.name_lower)
            ).all()

    def get(self, name: str) -> sa.Row:
        """The user named ``name`` (any case), or :class:`NotFound`."""
        with self.store.begin() as conn:
            return account(conn, name, "user")

    def namespace_kind(self, name: str) -> str | None:
        """``"user"`` or ``"org"`` for an existing namespace, None when nobody has the name."""
        with self.store.begin() as conn:
            return conn.execute(
                sa.select(account_table.c.kind).where(account_table.c.name_lower == name.lower())
            ).scalar()

    def create_org(self, name: str, *, fullname: str = "", actor: Actor | None = None) -> None:
        self._create_account("org", name, actor=actor, fullname=fullname)

    def set_member(self, org: str, user: str, role: str, *, actor: Actor | None = None) -> None:
        """Give ``user`` the ``role`` in ``org``, adding them or changing their role."""
        if role not in policy.ORG_ROLES:
            raise InvalidInput(f"Invalid role {role!r}: use one of {', '.join(policy.ORG_ROLES)}.")
        with self.store.begin() as conn:
            org_row = account(conn, org, "org")
            user_row = account(conn, user, "user")
            key = (memberships.c.org_id == org_row.id) & (memberships.c.user_id == user_row.id)
            if conn.execute(sa.select(memberships.c.role).where(key)).first():
                conn.execute(memberships.update().where(key).values(role=role))
            else:
                conn.execute(
                    memberships.insert().values(org_id=org_row.id, user_id=user_row.id, role=role)
                )
            detail = {"org": org_row.name, "user": user_row.name, "role": role}
            self.audit.record(conn, "member.set", actor=actor, detail=detail)

    def remove_member(self, org: str, user: str, *, actor: Actor | None = None) -> None:
        with self.store.begin() as conn:
            org_row = account(conn, org, "org")
            user_row = account(conn, user, "user")
            result = conn.execute(
                memberships.delete().where(
                    (memberships.c.org_id == org_row.id) & (memberships.c.user_id == user_row.id)
                )
            )
            if result.rowcount == 0:
                raise NotFound(f"{user} is not a member of {org}.")
            detail = {"org": org_row.name, "user": user_row.name}
            self.audit.record(conn, "member.remove", actor=actor, detail=detail)

    def memberships_of(self, user: str) -> list[tuple[sa.Row, str]]:
        """The organizations ``user`` belongs to, with the role in each."""
        with self.store.begin() as conn:
            user_row = account(conn, user, "user")
            rows = conn.execute(
                sa.select(account_table, memberships.c.role)
                .join(memberships, account_table.c.id == memberships.c.org_id)
                .where(memberships.c.user_id == user_row.id)
                .order_by(account_table.c.name_lower)
            ).all()
        return [(row, row.role) for row in rows]

    def entity_hub_id(self, kind: str, name: str) -> str:
        """The 24-hex ``_id`` the Hub shows for a scope's entity.

        An entity deleted after the token was made keeps a stable id derived from its name.
        """
        with self.store.begin() as conn:
            if kind in ("user", "org"):
                value = conn.execute(
                    sa.select(account_table.c.hub_id).where(
                        account_table.c.name_lower == name.lower()
                    )
                ).scalar()
            else:
                record = find_repo(conn, RepoId.parse(name, kind))
                value = record.hub_id if record else None
        return value or hashlib.sha256(f"{kind}:{name.lower()}".encode()).hexdigest()[:24]


def _check_password(password: str | None) -> str:
    if password is None or len(password) < 8:
        raise InvalidInput("A password needs at least 8 characters.")
    return password
