"""The immutable values the accounts operations hand out."""

from __future__ import annotations

from dataclasses import dataclass

from .. import policy
from ..names import RepoId


@dataclass(frozen=True)
class Actor:
    """Who makes a change, as the audit log records it: a user, and the token they used.

    Operations take ``actor=None`` for an administrator at the command line.
    """

    user_id: int | None
    token_id: int | None


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
