"""Users, organizations, repositories and tokens: the operations the CLI, API and pages share.

Every write goes through here, so validation and the rules about names, roles and scopes
live in one place. Authentication reads the database on every call: revoking, refreshing
or expiring a token takes effect on the next request in every process.
"""

from __future__ import annotations

import hashlib
import secrets
import shutil
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from dulwich.repo import Repo as GitRepo
from passlib.hash import argon2

from . import names, policy, tokens
from .config import Settings
from .names import RepoId
from .store import Store, access_grants, accounts, audit_log, login_failures, memberships, repos
from .store import tokens as token_table

#: How often "last used" is written for a busy token; every request would make each
#: git fetch a database write.
LAST_USED_RESOLUTION = 60.0


class AccountsError(Exception):
    """A request the caller can correct; the message says how."""


class NotFound(AccountsError):
    pass


class Conflict(AccountsError):
    pass


class InvalidInput(AccountsError):
    pass


class AuthError(Exception):
    """Credentials that do not identify anyone; ``kind`` picks the message to show."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind  # "password" | "org_token" | "invalid"


@dataclass(frozen=True)
class Caller:
    """An authenticated principal plus the ids the server needs for auditing."""

    principal: policy.Principal
    user_id: int
    token_id: int | None
    #: The stored digest of the token used: it changes on refresh, so anything bound to
    #: it (signed LFS transfer URLs) dies with the old value.
    token_digest: str | None = None


@dataclass(frozen=True)
class RepoRecord:
    id: int
    hub_id: str
    facts: policy.RepoFacts
    storage_id: str
    created_at: float

    @property
    def repo_id(self) -> RepoId:
        return RepoId(self.facts.type, self.facts.namespace, self.facts.name)


@dataclass(frozen=True)
class AccessRequest:
    """One user's request for a gated repository, as the Hub lists it."""

    request_id: str
    user: str
    fullname: str
    email: str | None
    status: str  # pending | accepted | rejected
    created_at: float
    updated_at: float
    fields: dict | None


@dataclass(frozen=True)
class TokenRecord:
    id: int
    name: str
    role: str
    scopes: tuple[policy.Scope, ...]
    can_read_gated: bool
    last4: str
    created_at: float
    expires_at: float | None
    last_used_at: float | None

    def to_policy(self) -> policy.Token:
        return policy.Token(self.name, self.role, self.scopes, self.can_read_gated)


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


def _scopes_from_json(data: Sequence[dict]) -> tuple[policy.Scope, ...]:
    return tuple(
        policy.Scope(item["type"], item["name"], frozenset(item["permissions"])) for item in data
    )


def _scopes_to_json(scopes: Iterable[policy.Scope]) -> list[dict]:
    return [{"type": s.kind, "name": s.name, "permissions": sorted(s.permissions)} for s in scopes]


def _hub_id() -> str:
    return secrets.token_hex(12)


_creator = accounts.alias("creator")
_REPO_QUERY = (
    sa.select(
        repos,
        accounts.c.name.label("ns_name"),
        accounts.c.kind.label("ns_kind"),
        _creator.c.name.label("creator_name"),
    )
    .join(accounts, accounts.c.id == repos.c.namespace_id)
    .outerjoin(_creator, _creator.c.id == repos.c.creator_id)
)

# The queries of every git request, built once: building a statement and its cache key
# costs more than running it on SQLite (bench/gate_bench.py --part auth).
_REPO_BY_IDENTITY = _REPO_QUERY.where(
    repos.c.type == sa.bindparam("type"),
    accounts.c.name_lower == sa.bindparam("namespace"),
    repos.c.name_lower == sa.bindparam("name"),
)
_TOKEN_WITH_OWNER = sa.select(token_table, accounts.c.name.label("owner_name")).join(
    accounts, accounts.c.id == token_table.c.owner_id
)
_TOKEN_BY_DIGEST = _TOKEN_WITH_OWNER.where(token_table.c.digest == sa.bindparam("digest"))
_TOKEN_BY_ID = _TOKEN_WITH_OWNER.where(token_table.c.id == sa.bindparam("token_id"))
_ORG_ROLES = (
    sa.select(accounts.c.name_lower, memberships.c.role)
    .join(accounts, accounts.c.id == memberships.c.org_id)
    .where(memberships.c.user_id == sa.bindparam("user_id"))
)
_GRANT_STATUS = sa.select(access_grants.c.status).where(
    access_grants.c.repo_id == sa.bindparam("repo_id"),
    access_grants.c.user_id == sa.bindparam("user_id"),
)


class Accounts:
    """The operations on hfgit's data, over one :class:`Store` and one repos directory."""

    def __init__(self, store: Store, repos_dir: Path, token_key: bytes | None = None) -> None:
        self.store = store
        self.repos_dir = repos_dir
        self.token_key = token_key

    @classmethod
    def open(cls, settings: Settings, *, create: bool = True) -> Accounts:
        """Open (and on first use create) the data directory and the database."""
        if create:
            settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            settings.repos_dir.mkdir(exist_ok=True, mode=0o700)
        store = Store(settings.database_url)
        if create:
            store.create_schema()
        return cls(store, settings.repos_dir, settings.token_key)

    # Users and organizations

    def _account(self, conn: sa.Connection, name: str, kind: str | None = None) -> sa.Row:
        query = sa.select(accounts).where(accounts.c.name_lower == name.lower())
        row = conn.execute(query).first()
        if row is None or (kind is not None and row.kind != kind):
            what = {"user": "user", "org": "organization"}.get(kind or "", "user or organization")
            raise NotFound(f"No {what} named {name!r}.")
        return row

    def _create_account(self, kind: str, name: str, **values: object) -> None:
        try:
            names.check_namespace(name)
        except names.InvalidName as exc:
            raise InvalidInput(str(exc)) from None
        with self.store.begin() as conn:
            taken = conn.execute(
                sa.select(accounts.c.kind).where(accounts.c.name_lower == name.lower())
            ).scalar()
            if taken:
                raise Conflict(f"The name {name!r} is already taken by a {taken}.")
            conn.execute(
                accounts.insert().values(
                    hub_id=_hub_id(),
                    kind=kind,
                    name=name,
                    name_lower=name.lower(),
                    fullname=values.get("fullname") or name,
                    email=values.get("email"),
                    password_hash=values.get("password_hash"),
                    created_at=time.time(),
                )
            )

    def create_user(
        self,
        name: str,
        password: str | None = None,
        *,
        fullname: str = "",
        email: str | None = None,
    ) -> None:
        password_hash = argon2.hash(_check_password(password)) if password is not None else None
        self._create_account(
            "user", name, fullname=fullname, email=email, password_hash=password_hash
        )

    def set_password(self, user: str, password: str) -> None:
        password_hash = argon2.hash(_check_password(password))
        with self.store.begin() as conn:
            row = self._account(conn, user, "user")
            conn.execute(
                accounts.update().where(accounts.c.id == row.id).values(password_hash=password_hash)
            )

    def verify_password(self, user: str, password: str) -> str | None:
        """Return the canonical user name when ``password`` is right, else None."""
        with self.store.begin() as conn:
            row = conn.execute(
                sa.select(accounts.c.name, accounts.c.password_hash).where(
                    accounts.c.name_lower == user.lower(), accounts.c.kind == "user"
                )
            ).first()
        if row is None or not row.password_hash:
            argon2.hash(password)  # spend the same time whether or not the user exists
            return None
        return row.name if argon2.verify(password, row.password_hash) else None

    def list_users(self) -> list[sa.Row]:
        with self.store.begin() as conn:
            return conn.execute(
                sa.select(accounts).where(accounts.c.kind == "user").order_by(accounts.c.name_lower)
            ).all()

    def user(self, name: str) -> sa.Row:
        with self.store.begin() as conn:
            return self._account(conn, name, "user")

    def namespace_kind(self, name: str) -> str | None:
        """``"user"`` or ``"org"`` for an existing namespace, None when nobody has the name."""
        with self.store.begin() as conn:
            return conn.execute(
                sa.select(accounts.c.kind).where(accounts.c.name_lower == name.lower())
            ).scalar()

    def create_org(self, name: str, *, fullname: str = "") -> None:
        self._create_account("org", name, fullname=fullname)

    def set_member(self, org: str, user: str, role: str) -> None:
        if role not in policy.ORG_ROLES:
            raise InvalidInput(f"Invalid role {role!r}: use one of {', '.join(policy.ORG_ROLES)}.")
        with self.store.begin() as conn:
            org_row = self._account(conn, org, "org")
            user_row = self._account(conn, user, "user")
            key = (memberships.c.org_id == org_row.id) & (memberships.c.user_id == user_row.id)
            if conn.execute(sa.select(memberships.c.role).where(key)).first():
                conn.execute(memberships.update().where(key).values(role=role))
            else:
                conn.execute(
                    memberships.insert().values(org_id=org_row.id, user_id=user_row.id, role=role)
                )

    def remove_member(self, org: str, user: str) -> None:
        with self.store.begin() as conn:
            org_row = self._account(conn, org, "org")
            user_row = self._account(conn, user, "user")
            result = conn.execute(
                memberships.delete().where(
                    (memberships.c.org_id == org_row.id) & (memberships.c.user_id == user_row.id)
                )
            )
            if result.rowcount == 0:
                raise NotFound(f"{user} is not a member of {org}.")

    def org_roles(self, conn: sa.Connection, user_id: int) -> dict[str, str]:
        rows = conn.execute(_ORG_ROLES, {"user_id": user_id})
        return {row.name_lower: row.role for row in rows}

    def memberships_of(self, user: str) -> list[tuple[sa.Row, str]]:
        """The organizations ``user`` belongs to, with the role in each."""
        with self.store.begin() as conn:
            user_row = self._account(conn, user, "user")
            rows = conn.execute(
                sa.select(accounts, memberships.c.role)
                .join(memberships, accounts.c.id == memberships.c.org_id)
                .where(memberships.c.user_id == user_row.id)
                .order_by(accounts.c.name_lower)
            ).all()
        return [(row, row.role) for row in rows]

    # Repositories

    @staticmethod
    def _repo_record(row: sa.Row) -> RepoRecord:
        facts = policy.RepoFacts(
            type=row.type,
            namespace=row.ns_name,
            name=row.name,
            private=row.private,
            gated=row.gated,
            namespace_is_org=row.ns_kind == "org",
            creator=row.creator_name,
        )
        return RepoRecord(row.id, row.hub_id, facts, row.storage_id, row.created_at)

    def find_repo(self, repo_id: RepoId) -> RepoRecord | None:
        with self.store.begin() as conn:
            return self._find_repo(conn, repo_id)

    def _find_repo(self, conn: sa.Connection, repo_id: RepoId) -> RepoRecord | None:
        row = conn.execute(
            _REPO_BY_IDENTITY,
            {
                "type": repo_id.type,
                "namespace": repo_id.namespace.lower(),
                "name": repo_id.name.lower(),
            },
        ).first()
        return None if row is None else self._repo_record(row)

    def get_repo(self, repo_id: RepoId) -> RepoRecord:
        record = self.find_repo(repo_id)
        if record is None:
            raise NotFound(f"No {repo_id.type} named {repo_id.repo_id}.")
        return record

    def list_repos(self, namespace: str | None = None) -> list[RepoRecord]:
        query = _REPO_QUERY.order_by(repos.c.type, accounts.c.name_lower, repos.c.name_lower)
        if namespace is not None:
            query = query.where(accounts.c.name_lower == namespace.lower())
        with self.store.begin() as conn:
            return [self._repo_record(row) for row in conn.execute(query)]

    def repo_path(self, record: RepoRecord) -> Path:
        """The bare repository on disk: by internal id, never by a user-supplied name."""
        return self.repos_dir / f"{record.storage_id}.git"

    def create_repo(
        self,
        repo_id: RepoId,
        *,
        private: bool = False,
        gated: str = "off",
        creator: str | None = None,
    ) -> RepoRecord:
        if gated not in policy.GATED_MODES:
            raise InvalidInput(f"Invalid gated mode {gated!r}: use auto, manual or off.")
        storage_id = uuid.uuid4().hex
        path = self.repos_dir / f"{storage_id}.git"
        with self.store.begin() as conn:
            ns_row = self._account(conn, repo_id.namespace)
            creator_id = self._account(conn, creator, "user").id if creator else None
            if ns_row.kind == "user" and creator_id is None:
                creator_id = ns_row.id
            if self._find_repo(conn, repo_id) is not None:
                raise Conflict(f"The {repo_id.type} {repo_id.repo_id} already exists.")
            conn.execute(
                repos.insert().values(
                    hub_id=_hub_id(),
                    type=repo_id.type,
                    namespace_id=ns_row.id,
                    name=repo_id.name,
                    name_lower=repo_id.name.lower(),
                    private=private,
                    gated=gated,
                    creator_id=creator_id,
                    storage_id=storage_id,
                    created_at=time.time(),
                )
            )
            # The bare repository is made inside the transaction: if it fails, no row
            # points at a directory that does not exist.
            _init_bare(path)
            record = self._find_repo(conn, repo_id)
        assert record is not None
        return record

    def update_repo(
        self, repo_id: RepoId, *, private: bool | None = None, gated: str | None = None
    ) -> RepoRecord:
        values: dict[str, object] = {}
        if private is not None:
            values["private"] = private
        if gated is not None:
            if gated not in policy.GATED_MODES:
                raise InvalidInput(f"Invalid gated mode {gated!r}: use auto, manual or off.")
            values["gated"] = gated
        with self.store.begin() as conn:
            record = self._find_repo(conn, repo_id)
            if record is None:
                raise NotFound(f"No {repo_id.type} named {repo_id.repo_id}.")
            if values:
                conn.execute(repos.update().where(repos.c.id == record.id).values(**values))
            updated = self._find_repo(conn, repo_id)
        assert updated is not None
        return updated

    def delete_repo(self, repo_id: RepoId) -> None:
        with self.store.begin() as conn:
            record = self._find_repo(conn, repo_id)
            if record is None:
                raise NotFound(f"No {repo_id.type} named {repo_id.repo_id}.")
            conn.execute(repos.delete().where(repos.c.id == record.id))
        path = self.repo_path(record)
        # Rename first so a half-deleted tree is never served, then remove it.
        trash = path.with_name(f"{record.storage_id}.deleted")
        if path.exists():
            path.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)

    # Gated access

    def set_access(self, repo_id: RepoId, user: str, status: str = "accepted") -> None:
        if status not in ("pending", "accepted", "rejected"):
            raise InvalidInput(f"Invalid access status {status!r}.")
        now = time.time()
        with self.store.begin() as conn:
            record = self._find_repo(conn, repo_id)
            if record is None:
                raise NotFound(f"No {repo_id.type} named {repo_id.repo_id}.")
            user_row = self._account(conn, user, "user")
            key = (access_grants.c.repo_id == record.id) & (access_grants.c.user_id == user_row.id)
            if conn.execute(_GRANT_STATUS, {"repo_id": record.id, "user_id": user_row.id}).first():
                conn.execute(
                    access_grants.update().where(key).values(status=status, updated_at=now)
                )
            else:
                conn.execute(
                    access_grants.insert().values(
                        repo_id=record.id,
                        user_id=user_row.id,
                        status=status,
                        created_at=now,
                        updated_at=now,
                    )
                )

    @staticmethod
    def _granted(conn: sa.Connection, repo: RepoRecord, user_id: int) -> bool:
        status = conn.execute(_GRANT_STATUS, {"repo_id": repo.id, "user_id": user_id}).scalar()
        return status == "accepted"

    def repo_access(self, repo_id: RepoId, user_id: int | None) -> tuple[RepoRecord | None, bool]:
        """The repository and whether ``user_id`` holds an accepted grant for it (gated
        repos only), in one transaction: this runs on every git request."""
        with self.store.begin() as conn:
            record = self._find_repo(conn, repo_id)
            granted = (
                record is not None
                and user_id is not None
                and record.facts.gated != "off"
                and self._granted(conn, record, user_id)
            )
        return record, granted

    def _gated_repo(self, conn: sa.Connection, repo_id: RepoId) -> RepoRecord:
        record = self._find_repo(conn, repo_id)
        if record is None:
            raise NotFound(f"No {repo_id.type} named {repo_id.repo_id}.")
        if record.facts.gated == "off":
            raise InvalidInput(
                f"The {repo_id.type} {repo_id.repo_id} is not gated: enable gating "
                "(auto or manual) in its settings first."
            )
        return record

    @staticmethod
    def _request_id(repo: RepoRecord, user_hub_id: str) -> str:
        """A stable 24-hex id per (repo, user), so requests can be named without a username."""
        return hashlib.sha256(f"{repo.hub_id}:{user_hub_id}".encode()).hexdigest()[:24]

    _request_query = sa.select(
        access_grants,
        accounts.c.name,
        accounts.c.fullname,
        accounts.c.email,
        accounts.c.hub_id.label("user_hub_id"),
    ).join(accounts, accounts.c.id == access_grants.c.user_id)

    def request_access(self, repo_id: RepoId, user: str) -> str:
        """Ask for access to a gated repo; ``auto`` gating accepts at once.

        Asking again changes nothing: an accepted or rejected request keeps its status.
        Returns the request's status.
        """
        now = time.time()
        with self.store.begin() as conn:
            record = self._gated_repo(conn, repo_id)
            user_row = self._account(conn, user, "user")
            existing = conn.execute(
                _GRANT_STATUS, {"repo_id": record.id, "user_id": user_row.id}
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
            self._audit(conn, "access.request", user_id=user_row.id, repo_id=record.id)
        return status

    def access_requests(self, repo_id: RepoId, status: str) -> list[AccessRequest]:
        if status not in ("pending", "accepted", "rejected"):
            raise InvalidInput(f"Invalid access status {status!r}.")
        with self.store.begin() as conn:
            record = self._gated_repo(conn, repo_id)
            rows = conn.execute(
                self._request_query.where(
                    access_grants.c.repo_id == record.id, access_grants.c.status == status
                ).order_by(access_grants.c.created_at, accounts.c.name_lower)
            ).all()
        return [
            AccessRequest(
                request_id=self._request_id(record, row.user_hub_id),
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
    ) -> None:
        """Move an existing request to ``status``, naming it by user or by request id.

        As on the Hub, a request already in ``status`` is reported as not found.
        """
        if status not in ("pending", "accepted", "rejected"):
            raise InvalidInput(
                f"Invalid access status {status!r}: use accepted, rejected or pending."
            )
        if (user is None) == (request_id is None):
            raise InvalidInput("Name the request by exactly one of user or requestId.")
        with self.store.begin() as conn:
            record = self._gated_repo(conn, repo_id)
            query = self._request_query.where(access_grants.c.repo_id == record.id)
            if user is not None:
                query = query.where(accounts.c.name_lower == user.lower())
            rows = conn.execute(query).all()
            if request_id is not None:
                rows = [r for r in rows if self._request_id(record, r.user_hub_id) == request_id]
            who = user or request_id
            if not rows:
                raise NotFound(f"No access request from {who} for {repo_id.repo_id}.")
            row = rows[0]
            if row.status == status:
                raise NotFound(f"The access request from {who} is already {status}.")
            conn.execute(
                access_grants.update()
                .where(access_grants.c.repo_id == record.id, access_grants.c.user_id == row.user_id)
                .values(status=status, updated_at=time.time())
            )
            self._audit(conn, f"access.{status}", user_id=row.user_id, repo_id=record.id)

    def grant_access(self, repo_id: RepoId, user: str) -> None:
        """Accept ``user`` without a request of theirs; refused if they already have access."""
        with self.store.begin() as conn:
            record = self._gated_repo(conn, repo_id)
            user_row = self._account(conn, user, "user")
            status = conn.execute(
                _GRANT_STATUS, {"repo_id": record.id, "user_id": user_row.id}
            ).scalar()
            if status == "accepted":
                raise InvalidInput(f"{user_row.name} already has access to {repo_id.repo_id}.")
        self.set_access(repo_id, user_row.name, "accepted")

    # Failed logins (rate limiting of the settings pages)

    def record_login_failure(self, keys: Iterable[str], *, at: float, forget_before: float) -> None:
        """Note one failed login under each key, dropping entries older than ``forget_before``."""
        with self.store.begin() as conn:
            conn.execute(login_failures.delete().where(login_failures.c.at < forget_before))
            conn.execute(login_failures.insert(), [{"key": key, "at": at} for key in keys])

    def count_login_failures(self, key: str, *, since: float) -> tuple[int, float | None]:
        """How many failures ``key`` has had after ``since``, and when the oldest of them was."""
        with self.store.begin() as conn:
            row = conn.execute(
                sa.select(sa.func.count(), sa.func.min(login_failures.c.at)).where(
                    login_failures.c.key == key, login_failures.c.at > since
                )
            ).one()
        return int(row[0]), row[1]

    def clear_login_failures(self, keys: Iterable[str]) -> None:
        with self.store.begin() as conn:
            conn.execute(login_failures.delete().where(login_failures.c.key.in_(list(keys))))

    # Tokens

    def _check_scopes(
        self, conn: sa.Connection, owner: sa.Row, scopes: Sequence[policy.Scope]
    ) -> None:
        for scope in scopes:
            if scope.kind == "user":
                if scope.name.lower() != owner.name_lower:
                    raise InvalidInput(
                        f"A user scope can only name the token owner's own namespace "
                        f"({owner.name}), not {scope.name!r}."
                    )
            elif scope.kind == "org":
                self._account(conn, scope.name, "org")
            elif self._find_repo(conn, RepoId.parse(scope.name, scope.kind)) is None:
                raise NotFound(f"No {scope.kind} named {scope.name} for the scope.")

    def create_token(
        self,
        user: str,
        name: str,
        role: str,
        *,
        scopes: Sequence[policy.Scope] = (),
        can_read_gated: bool = False,
        expires_in_days: float | None = None,
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
        secret = tokens.generate()
        now = time.time()
        with self.store.begin() as conn:
            owner = self._account(conn, user, "user")
            self._check_scopes(conn, owner, scopes)
            if self._token_row(conn, owner.id, name, missing_ok=True) is not None:
                raise Conflict(f"{owner.name} already has a token named {name!r}.")
            conn.execute(
                token_table.insert().values(
                    owner_id=owner.id,
                    display_name=name,
                    role=role,
                    scopes=_scopes_to_json(scopes),
                    can_read_gated=can_read_gated,
                    digest=tokens.digest(secret, self.token_key),
                    last4=tokens.last4(secret),
                    created_at=now,
                    expires_at=now + expires_in_days * 86400 if expires_in_days else None,
                )
            )
            record = self._token_record(self._token_row(conn, owner.id, name))
        return secret, record

    def _token_row(
        self, conn: sa.Connection, owner_id: int, name: str, *, missing_ok: bool = False
    ) -> sa.Row | None:
        row = conn.execute(
            sa.select(token_table).where(
                token_table.c.owner_id == owner_id, token_table.c.display_name == name
            )
        ).first()
        if row is None and not missing_ok:
            raise NotFound(f"No token named {name!r}.")
        return row

    @staticmethod
    def _token_record(row: sa.Row) -> TokenRecord:
        return TokenRecord(
            id=row.id,
            name=row.display_name,
            role=row.role,
            scopes=_scopes_from_json(row.scopes),
            can_read_gated=row.can_read_gated,
            last4=row.last4,
            created_at=row.created_at,
            expires_at=row.expires_at,
            last_used_at=row.last_used_at,
        )

    def list_tokens(self, user: str) -> list[TokenRecord]:
        with self.store.begin() as conn:
            owner = self._account(conn, user, "user")
            rows = conn.execute(
                sa.select(token_table)
                .where(token_table.c.owner_id == owner.id)
                .order_by(token_table.c.created_at, token_table.c.id)
            )
            return [self._token_record(row) for row in rows]

    def user_token(self, user: str, token_id: int) -> TokenRecord | None:
        """``user``'s token with that id; None when it is missing or someone else's."""
        with self.store.begin() as conn:
            owner = self._account(conn, user, "user")
            row = conn.execute(
                sa.select(token_table).where(
                    token_table.c.id == token_id, token_table.c.owner_id == owner.id
                )
            ).first()
        return None if row is None else self._token_record(row)

    def refresh_token(self, user: str, name: str) -> str:
        """Give the token a new secret; the old one stops working at once."""
        secret = tokens.generate()
        with self.store.begin() as conn:
            owner = self._account(conn, user, "user")
            row = self._token_row(conn, owner.id, name)
            conn.execute(
                token_table.update()
                .where(token_table.c.id == row.id)
                .values(
                    digest=tokens.digest(secret, self.token_key),
                    last4=tokens.last4(secret),
                    refreshed_at=time.time(),
                )
            )
            self._audit(conn, "token.refresh", user_id=owner.id, token_id=row.id)
        return secret

    def delete_token(self, user: str, name: str) -> None:
        with self.store.begin() as conn:
            owner = self._account(conn, user, "user")
            row = self._token_row(conn, owner.id, name)
            conn.execute(token_table.delete().where(token_table.c.id == row.id))
            self._audit(conn, "token.delete", user_id=owner.id, token_id=row.id)

    def authenticate(self, secret: str) -> Caller:
        """Resolve a token to its caller, or raise :class:`AuthError`.

        The shape and checksum are checked before the database: typos and passwords
        cost no query.
        """
        if tokens.is_org_token(secret):
            raise AuthError("org_token")
        if not tokens.looks_like_token(secret):
            raise AuthError("password")
        if not tokens.is_well_formed(secret):
            raise AuthError("invalid")
        digest = tokens.digest(secret, self.token_key)
        return self._token_caller(_TOKEN_BY_DIGEST, {"digest": digest})

    def caller_for_token(self, token_id: int) -> Caller:
        """The caller a token id stands for now; :class:`AuthError` once it is deleted or
        expired. For credentials issued earlier under a token (signed LFS URLs)."""
        return self._token_caller(_TOKEN_BY_ID, {"token_id": token_id})

    def _token_caller(self, query: sa.Select, params: dict) -> Caller:
        now = time.time()
        with self.store.begin() as conn:
            row = conn.execute(query, params).first()
            if row is None or (row.expires_at is not None and row.expires_at <= now):
                raise AuthError("invalid")
            if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
                conn.execute(
                    token_table.update().where(token_table.c.id == row.id).values(last_used_at=now)
                )
                self._audit(conn, "token.use", user_id=row.owner_id, token_id=row.id)
            roles = self.org_roles(conn, row.owner_id)
        token = self._token_record(row).to_policy()
        principal = policy.Principal(row.owner_name, token, roles)
        return Caller(principal, row.owner_id, row.id, row.digest)

    def entity_hub_id(self, kind: str, name: str) -> str:
        """The 24-hex ``_id`` the Hub shows for a scope's entity.

        An entity deleted after the token was made keeps a stable id derived from its name.
        """
        with self.store.begin() as conn:
            if kind in ("user", "org"):
                value = conn.execute(
                    sa.select(accounts.c.hub_id).where(accounts.c.name_lower == name.lower())
                ).scalar()
            else:
                record = self._find_repo(conn, RepoId.parse(name, kind))
                value = record.hub_id if record else None
        return value or hashlib.sha256(f"{kind}:{name.lower()}".encode()).hexdigest()[:24]

    # Audit

    @staticmethod
    def _audit(conn: sa.Connection, event: str, **values: object) -> None:
        detail = values.pop("detail", None)
        conn.execute(
            audit_log.insert().values(at=time.time(), event=event, detail=detail, **values)
        )

    def audit(self, event: str, **values: object) -> None:
        with self.store.begin() as conn:
            self._audit(conn, event, **values)

    def audit_events(self, limit: int = 100) -> list[sa.Row]:
        with self.store.begin() as conn:
            return conn.execute(
                sa.select(audit_log).order_by(audit_log.c.id.desc()).limit(limit)
            ).all()


def _check_password(password: str | None) -> str:
    if password is None or len(password) < 8:
        raise InvalidInput("A password needs at least 8 characters.")
    return password


def _init_bare(path: Path) -> None:
    GitRepo.init_bare(str(path), mkdir=True)
    # Name the default branch as git does today; dulwich's default may differ.
    (path / "HEAD").write_text("ref: refs/heads/main\n")
