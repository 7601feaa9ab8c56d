"""Who is calling and what they may do on one repository: shared by git, LFS and the API.

Every "no" the gate gives is a :class:`~hfgit.server.refusal.Refusal`; the surface that
asked renders it in its own dialect.
"""

from __future__ import annotations

from dataclasses import dataclass

from werkzeug.datastructures import Authorization

from ..accounts import Accounts, AuthError, Caller, RepoRecord
from ..names import RepoId
from ..policy import Action, Decision, decide
from .observe import AUTH_FAILURE, USER
from .refusal import Refusal

#: What git (and git-lfs) show for credentials that identify nobody, by kind.
BAD_CREDENTIALS = {
    "password": (
        "Password authentication in git is no longer supported. "
        "You must use a user access token instead."
    ),
    "org_token": (
        "Organization API tokens (api_org_...) are deprecated and no longer accepted. "
        "You must use a user access token instead."
    ),
    "invalid": (
        "Invalid username or password. The token is unknown, expired, deleted or was "
        "refreshed: create a new one or use the refreshed value."
    ),
}


@dataclass(frozen=True)
class Access:
    caller: Caller | None
    repo: RepoRecord | None
    decision: Decision


def bad_credentials(error: AuthError) -> Refusal:
    """The 401 for credentials that identify nobody; ``reason`` is the kind of mistake."""
    return Refusal(401, BAD_CREDENTIALS[error.kind], challenge=True, reason=error.kind)


def secret_from(environ: dict) -> str | None:
    """The token (or password) a request carries: Basic password, or a Bearer token.

    Git sends the token as the Basic password with any username. A client that puts
    the token in the username field and leaves the password empty is understood too.
    """
    header = environ.get("HTTP_AUTHORIZATION")
    if not header:
        return None
    auth = Authorization.from_header(header)
    if auth is None:
        raise AuthError("invalid")
    if auth.type == "basic":
        return auth.password or auth.username or None
    if auth.type == "bearer" and auth.token:
        return auth.token
    raise AuthError("invalid")


class Gate:
    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts

    def caller(self, environ: dict) -> Caller | None:
        """The request's caller, None when it sends no credentials.

        Raises :class:`Refusal` (401) for credentials that identify nobody.
        """
        try:
            secret = secret_from(environ)
            caller = None if secret is None else self.accounts.lookups.authenticate(secret)
        except AuthError as error:
            environ[AUTH_FAILURE] = error.kind
            raise bad_credentials(error) from None
        if caller is not None:
            environ[USER] = caller.principal.user
        return caller

    def check(self, caller: Caller | None, repo_id: RepoId, action: Action) -> Access:
        """Look the repository up once and decide; the answer is the same for hidden and missing."""
        record, granted = self.accounts.lookups.repo_access(
            repo_id, caller.user_id if caller else None
        )
        principal = caller.principal if caller else None
        facts = record.facts if record else None
        return Access(caller, record, decide(principal, facts, action, granted=granted))

    def require(self, caller: Caller | None, repo_id: RepoId, action: Action) -> Access:
        """:meth:`check`, raising the policy's :class:`Refusal` unless ``action`` is allowed."""
        access = self.check(caller, repo_id, action)
        if not access.decision:
            raise Refusal.from_deny(access.decision)
        return access

    def authorize(self, environ: dict, repo_id: RepoId, action: Action) -> Access:
        """The request's caller and the repository, when ``action`` is allowed; else raises."""
        return self.require(self.caller(environ), repo_id, action)
