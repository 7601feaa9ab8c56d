"""Who is calling and what they may do on one repository: shared by git, LFS and the API."""

from __future__ import annotations

from dataclasses import dataclass

from werkzeug.datastructures import Authorization

from ..accounts import Accounts, AuthError, Caller, RepoRecord
from ..names import RepoId
from ..policy import Action, Decision, decide


@dataclass(frozen=True)
class Access:
    caller: Caller | None
    repo: RepoRecord | None
    decision: Decision


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
        """Resolve the request's credentials; raises :class:`AuthError` for bad ones."""
        secret = secret_from(environ)
        return None if secret is None else self.accounts.lookups.authenticate(secret)

    def check(self, caller: Caller | None, repo_id: RepoId, action: Action) -> Access:
        """Look the repository up once and decide; the answer is the same for hidden and missing."""
        record, granted = self.accounts.lookups.repo_access(
            repo_id, caller.user_id if caller else None
        )
        principal = caller.principal if caller else None
        facts = record.facts if record else None
        return Access(caller, record, decide(principal, facts, action, granted=granted))
