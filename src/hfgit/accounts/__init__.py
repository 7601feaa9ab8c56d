"""Users, organizations, repositories, gated access and tokens: what the CLI, API and pages share.

Every write goes through here, so validation and the rules about names, roles and scopes
live in one place. :class:`Accounts` only puts the parts together; callers use the part
(``accounts.repos.create(...)``).
"""

from __future__ import annotations

from pathlib import Path

from ..config import Settings
from ..store import Store
from .audit import AuditLog
from .errors import (
    AccountsError,
    AuthError,
    Conflict,
    InvalidInput,
    NotFound,
    StorageUnavailable,
)
from .gated import GatedAccess
from .logins import LoginFailures
from .lookups import Lookups
from .records import AccessRequest, Actor, Caller, RepoRecord, TokenRecord
from .repos import Repos
from .tokens import Tokens, make_scope, parse_scope
from .users import Users

__all__ = [
    "AccessRequest",
    "Accounts",
    "AccountsError",
    "Actor",
    "AuthError",
    "Caller",
    "Conflict",
    "InvalidInput",
    "NotFound",
    "RepoRecord",
    "StorageUnavailable",
    "TokenRecord",
    "make_scope",
    "parse_scope",
]


class Accounts:
    """hfgit's data over one :class:`Store` and one repos directory, as its parts."""

    def __init__(self, store: Store, repos_dir: Path, token_key: bytes | None = None) -> None:
        self.store = store
        self.repos_dir = repos_dir
        self.token_key = token_key
        self.audit = AuditLog(store)
        self.lookups = Lookups(store, token_key, self.audit)
        self.users = Users(store, self.audit)
        self.repos = Repos(store, repos_dir, self.audit)
        self.gated = GatedAccess(store, self.audit)
        self.tokens = Tokens(store, token_key, self.audit)
        self.logins = LoginFailures(store)

    @classmethod
    def open(cls, settings: Settings, *, create: bool = True) -> Accounts:
        """Open the data directory and the database; with ``create``, make them on first use.

        The embedded SQLite database is upgraded here; any other must already be at this
        release's schema (:class:`~hfgit.store.SchemaOutOfDate` says to upgrade it).
        """
        if create:
            settings.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            settings.repos_dir.mkdir(exist_ok=True, mode=0o700)
        store = Store(settings.database_url)
        if create and settings.embedded_database:
            store.upgrade()
        elif create:
            store.require_current()
        return cls(store, settings.repos_dir, settings.token_key)
