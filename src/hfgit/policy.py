"""Who may do what: pure functions from plain data to a decision.

Nothing here does I/O, so every combination of token role, relationship to the repo,
visibility and action can be table-tested. Effective access is always the token's
permission intersected with its owner's own rights: a token never grants more than the
person who made it has.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

ORG_ROLES = ("read", "contributor", "write", "admin")
TOKEN_ROLES = ("read", "write", "fineGrained")
GATED_MODES = ("off", "auto", "manual")
PERM_READ = "repo.content.read"
PERM_WRITE = "repo.write"
PERMISSIONS = (PERM_READ, PERM_WRITE)
SCOPE_KINDS = ("user", "org", "model", "dataset", "space")

#: One message for "missing" and "hidden" alike, so a private repo cannot be told apart
#: from one that does not exist.
NOT_FOUND_MESSAGE = "Repository not found."
AUTH_REQUIRED_MESSAGE = (
    "Authentication required: use a user access token as the password "
    "(any username), or configure the hf credential helper."
)


class Action(enum.Enum):
    READ = "read"  # clone, fetch, LFS download
    WRITE = "write"  # push, LFS upload
    MANAGE = "manage"  # settings, delete


@dataclass(frozen=True)
class Scope:
    """One entry of a fine-grained token: an entity and what the token may do there.

    A namespace scope (user, org) names its entity by name. A repository scope names it
    by identity, ``repo`` (the repository's ``hub_id``): it follows the repository when
    it is moved, and a repository created later under its old name is not covered.
    ``repo`` None (the repository is gone) covers nothing; ``name`` is then only a label.
    """

    kind: str  # "user" | "org" | "model" | "dataset" | "space"
    name: str  # a namespace for user/org, "ns/name" for a repo (a label: see ``repo``)
    permissions: frozenset[str]
    repo: str | None = None

    def covers(self, repo: RepoFacts, owner: str) -> bool:
        if self.kind == "user":
            # A user scope only ever means a namespace the token's owner owns.
            return (
                not repo.namespace_is_org
                and self.name.lower() == repo.namespace.lower() == owner.lower()
            )
        if self.kind == "org":
            return repo.namespace_is_org and self.name.lower() == repo.namespace.lower()
        return self.kind == repo.type and self.repo is not None and self.repo == repo.hub_id

    def covers_namespace(self, namespace: str, is_org: bool, owner: str) -> bool:
        if self.kind == "user":
            return not is_org and self.name.lower() == namespace.lower() == owner.lower()
        return self.kind == "org" and is_org and self.name.lower() == namespace.lower()

    @property
    def can_write(self) -> bool:
        return PERM_WRITE in self.permissions

    @property
    def can_read(self) -> bool:
        return PERM_READ in self.permissions or self.can_write


@dataclass(frozen=True)
class Token:
    """What a token allows by itself, before its owner's rights are applied."""

    name: str
    role: str
    scopes: tuple[Scope, ...] = ()
    can_read_gated: bool = False


@dataclass(frozen=True)
class Principal:
    """An authenticated caller: a user, acting through a token or a browser session."""

    user: str
    token: Token | None  # None: a logged-in session, with the user's full rights
    org_roles: Mapping[str, str] = field(default_factory=dict)  # lowercased org -> role

    def role_in(self, org: str) -> str | None:
        return self.org_roles.get(org.lower())


@dataclass(frozen=True)
class RepoFacts:
    type: str
    namespace: str
    name: str
    private: bool
    gated: str = "off"
    namespace_is_org: bool = False
    creator: str | None = None
    hub_id: str | None = None  # the identity a repository scope names

    @property
    def repo_id(self) -> str:
        return f"{self.namespace}/{self.name}"


@dataclass(frozen=True)
class Allow:
    def __bool__(self) -> bool:
        return True


@dataclass(frozen=True)
class Deny:
    """A refusal with the HTTP status and the Hub's ``X-Error-Code`` to answer with."""

    status: int
    code: str
    message: str

    def __bool__(self) -> bool:
        return False


Decision = Allow | Deny
ALLOW = Allow()


def _not_found(principal: Principal | None) -> Deny:
    if principal is None:
        return Deny(401, "RepoNotFound", AUTH_REQUIRED_MESSAGE)
    return Deny(404, "RepoNotFound", NOT_FOUND_MESSAGE)


def _gated(repo: RepoFacts) -> Deny:
    return Deny(
        403,
        "GatedRepo",
        f"Access to {repo.type} {repo.repo_id} is restricted and you are not in the "
        f"authorized list. Ask the owners for access to {repo.repo_id}.",
    )


@dataclass(frozen=True)
class _Rights:
    """What a user may do on one repository, tokens aside."""

    visible: bool
    read: bool
    write: bool
    manage: bool
    no_write_reason: str


def _owner_rights(principal: Principal, repo: RepoFacts, granted: bool) -> _Rights:
    user = principal.user
    if not repo.namespace_is_org and user.lower() == repo.namespace.lower():
        return _Rights(True, True, True, True, "")
    role = principal.role_in(repo.namespace) if repo.namespace_is_org else None
    if role is not None:
        created = repo.creator is not None and repo.creator.lower() == user.lower()
        can_write = role in ("write", "admin") or (role == "contributor" and created)
        if role == "read":
            reason = (
                f"You have the read role in organization {repo.namespace}: pushing needs "
                "the contributor role (for repos you created), write or admin."
            )
        else:
            reason = (
                f"You have the contributor role in organization {repo.namespace}: "
                "contributors can only push to repositories they created."
            )
        return _Rights(True, True, can_write, can_write, "" if can_write else reason)
    readable = not repo.private and (repo.gated == "off" or granted)
    return _Rights(
        visible=not repo.private,
        read=readable,
        write=False,
        manage=False,
        no_write_reason=f"You do not have write access to {repo.type} {repo.repo_id}.",
    )


def _covering(token: Token, repo: RepoFacts, owner: str) -> list[Scope]:
    return [scope for scope in token.scopes if scope.covers(repo, owner)]


def decide(
    principal: Principal | None,
    repo: RepoFacts | None,
    action: Action,
    *,
    granted: bool = False,
) -> Decision:
    """Decide whether ``principal`` may perform ``action`` on ``repo``.

    ``repo`` is None when no such repository exists; ``granted`` tells whether the caller
    holds an accepted access grant for this (gated) repository.
    """
    if repo is None:
        return _not_found(principal)
    if principal is None:
        if action is Action.READ and not repo.private and repo.gated == "off":
            return ALLOW
        return (
            _not_found(principal)
            if repo.private
            else Deny(401, "AuthRequired", AUTH_REQUIRED_MESSAGE)
        )

    rights = _owner_rights(principal, repo, granted)
    token = principal.token
    scopes = _covering(token, repo, principal.user) if token and token.role == "fineGrained" else []

    # Reading: the token must not hide the repo, and gates apply.
    if not rights.visible:
        return _not_found(principal)
    if token is not None and token.role == "fineGrained":
        scoped_read = any(scope.can_read for scope in scopes)
        if repo.private and not scoped_read:
            return _not_found(principal)
        if repo.gated != "off" and not scoped_read:
            if not rights.read:
                return _gated(repo)
            if not token.can_read_gated:
                return Deny(
                    403,
                    "GatedRepo",
                    f"Your fine-grained token {token.name!r} may not read gated repositories: "
                    f"enable canReadGatedRepos or add a scope for {repo.type} {repo.repo_id}.",
                )
    if not rights.read:
        return _gated(repo)
    if action is Action.READ:
        return ALLOW

    # Writing and managing: the owner's rights first, then what the token allows.
    allowed = rights.manage if action is Action.MANAGE else rights.write
    if not allowed:
        return Deny(403, "Forbidden", rights.no_write_reason)
    if token is None or token.role == "write":
        return ALLOW
    if token.role == "read":
        return Deny(
            403,
            "Forbidden",
            f"Your token {token.name!r} has the read role: it can fetch but not push. "
            "Use a token with the write role, or a fine-grained token with repo.write "
            f"on {repo.type} {repo.repo_id}.",
        )
    if any(scope.can_write for scope in scopes):
        return ALLOW
    return Deny(
        403,
        "Forbidden",
        f"Your fine-grained token {token.name!r} does not grant repo.write on "
        f"{repo.type} {repo.repo_id}.",
    )


def decide_create(principal: Principal | None, namespace: str, namespace_is_org: bool) -> Decision:
    """Decide whether ``principal`` may create a repository in ``namespace``."""
    if principal is None:
        return Deny(401, "AuthRequired", AUTH_REQUIRED_MESSAGE)
    if namespace_is_org:
        role = principal.role_in(namespace)
        if role not in ("contributor", "write", "admin"):
            return Deny(
                403,
                "Forbidden",
                f"Creating repositories in organization {namespace} needs the contributor, "
                f"write or admin role{'' if role is None else f'; you have {role}'}.",
            )
    elif namespace.lower() != principal.user.lower():
        return Deny(403, "Forbidden", f"You cannot create repositories in {namespace}'s namespace.")
    token = principal.token
    if token is None or token.role == "write":
        return ALLOW
    if token.role == "fineGrained" and any(
        scope.can_write and scope.covers_namespace(namespace, namespace_is_org, principal.user)
        for scope in token.scopes
    ):
        return ALLOW
    return Deny(
        403,
        "Forbidden",
        f"Your token {token.name!r} cannot create repositories in {namespace}: use a write "
        "token or a fine-grained token with repo.write on that namespace.",
    )
