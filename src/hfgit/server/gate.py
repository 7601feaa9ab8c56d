"""Who is calling and what they may do on one repository: shared by git, LFS and the API.

Every "no" the gate gives is a :class:`~hfgit.server.refusal.Refusal`; the surface that
asked renders it in its own dialect.
"""

from __future__ import annotations

import hashlib
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass

from werkzeug.datastructures import Authorization

from .. import tokens as token_format
from ..accounts import Accounts, AuthError, Caller, RepoRecord
from ..config import Settings
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


#: What the tokens of a disabled user get: a 403 without a challenge, so git shows it
#: and keeps the stored credential, which works again once the user is enabled.
DISABLED_MESSAGE = "This account is disabled. Ask an administrator of this server."


#: The key prefixes of failed authentications in the shared ``login_failures`` table.
AUTH_KEYS = ("auth-client:", "auth-token:")


@dataclass(frozen=True)
class AuthLimits:
    """Failed authentications allowed within ``window`` seconds, per client address and
    per presented token, before the gate answers 429 instead of looking credentials up."""

    per_client: int = Settings.auth_max_failures_client
    per_token: int = Settings.auth_max_failures_token
    window: int = Settings.auth_window

    @classmethod
    def from_settings(cls, settings: Settings) -> AuthLimits:
        return cls(
            settings.auth_max_failures_client,
            settings.auth_max_failures_token,
            settings.auth_window,
        )


def client_key(environ: dict) -> str:
    """Who the failure is counted against: the peer address (``ProxyFix`` has put the
    client's there when the proxy is trusted; a forged header is never read here).
    IPv6 clients count by /64, the block one host usually holds."""
    address = environ.get("REMOTE_ADDR") or "unknown"
    try:
        parsed = ipaddress.ip_address(address)
    except ValueError:
        return f"auth-client:{address[:100]}"
    if isinstance(parsed, ipaddress.IPv6Address):
        if parsed.ipv4_mapped is not None:
            return f"auth-client:{parsed.ipv4_mapped}"
        return f"auth-client:{ipaddress.ip_network(f'{parsed}/64', strict=False)}"
    return f"auth-client:{parsed}"


def token_key(secret: str) -> str | None:
    """The presented token's counter: a short hash, never the token. Passwords (not
    token-shaped) get none, so no hash of someone's password is ever stored."""
    if not (token_format.looks_like_token(secret) or token_format.is_org_token(secret)):
        return None
    return "auth-token:" + hashlib.sha256(secret.encode()).hexdigest()[:16]


class FailureLimiter:
    """Counts failed authentications in the database, shared by every worker and
    gatekeeper. Only failures are counted, so a valid token costs nothing here; the
    window slides, so a block lifts by itself once its oldest failure ages out."""

    def __init__(
        self, accounts: Accounts, limits: AuthLimits, clock: Callable[[], float] = time.time
    ) -> None:
        self.failures = accounts.logins
        self.limits = limits
        self.clock = clock

    def failed(self, environ: dict, secret: str | None) -> None:
        """Count one failure; raise the 429 when this client or token is over its limit."""
        limits = {client_key(environ): self.limits.per_client}
        key = token_key(secret) if secret else None
        if key is not None:
            limits[key] = self.limits.per_token
        wait = self.failures.record_unless_over(
            limits, at=self.clock(), window=self.limits.window, sweep=AUTH_KEYS
        )
        if wait is not None:
            raise Refusal(
                429,
                "Too many failed authentication attempts from this address or with this "
                f"token. Try again in {wait} seconds, with a valid user access token.",
                retry_after=wait,
            )


def bad_credentials(error: AuthError) -> Refusal:
    """The refusal for credentials that identify nobody (401; ``reason`` is the kind of
    mistake) or a disabled user (403)."""
    if error.kind == "disabled":
        return Refusal(403, DISABLED_MESSAGE, reason="disabled")
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
    def __init__(self, accounts: Accounts, limits: AuthLimits | None = None) -> None:
        self.accounts = accounts
        self.limiter = FailureLimiter(accounts, limits or AuthLimits())

    def caller(self, environ: dict) -> Caller | None:
        """The request's caller, None when it sends no credentials.

        Raises :class:`Refusal`: 401 for credentials that identify nobody, 429 once too
        many of those came from this client or with this token.
        """
        secret = None
        try:
            secret = secret_from(environ)
            caller = None if secret is None else self.accounts.lookups.authenticate(secret)
        except AuthError as error:
            environ[AUTH_FAILURE] = error.kind
            self.limiter.failed(environ, secret)
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
