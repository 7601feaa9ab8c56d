"""The settings pages: log in, then list, create, refresh and delete access tokens.

Server-rendered Jinja2 templates with plain forms, so the pages work without JavaScript
(a few lines of it only power the copy button). Only a browser session may manage
tokens: a token sent in an ``Authorization`` header is ignored here. Every form carries
the session's CSRF token, and a new token's value is rendered once, in the response to
the form that made it, never stored or redirected through.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import quote

from jinja2 import Environment, FileSystemLoader, select_autoescape
from werkzeug.utils import redirect, send_from_directory
from werkzeug.wrappers import Request, Response

from .. import policy
from ..accounts import (
    Accounts,
    AccountsError,
    Actor,
    Conflict,
    InvalidInput,
    TokenRecord,
    make_scope,
)
from ..accounts import NotFound as AccountNotFound
from ..accounts.logins import LoginLimiter
from ..config import Settings
from .observe import USER
from .refusal import Refusal
from .sessions import Session, SessionCookies, csrf_matches, password_tag
from .surface import Surface

HERE = Path(__file__).resolve().parent
STATIC_DIR = HERE / "static"
#: Scope rows the New token form shows at first; "Add a scope row" adds one more.
DEFAULT_SCOPE_ROWS = 3
MAX_SCOPE_ROWS = 50

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


class PageRequest(Request):
    #: Forms here are small; a larger body is refused before it is parsed.
    max_content_length = 256 * 1024
    max_form_parts = 1000


def _when(timestamp: float | None) -> str:
    if timestamp is None:
        return "—"
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%d %H:%M UTC")


def scope_summary(token: TokenRecord) -> str:
    """One line per token for the table: what a fine-grained token reaches."""
    if token.role != "fineGrained":
        return "all your repositories" if token.role == "write" else "read everything you can"
    parts = []
    for scope in token.scopes:
        perms = "write" if scope.can_write else "read"
        parts.append(f"{scope.kind} {scope.name}: {perms}")
    if token.can_read_gated:
        parts.append("gated repos you were granted: read")
    return "; ".join(parts)


class FormError(Exception):
    """A form value the user can correct; shown above the form."""


class PagesService(Surface):
    request_class = PageRequest

    def __init__(self, settings: Settings, accounts: Accounts) -> None:
        self.settings = settings
        self.accounts = accounts
        self.cookies = SessionCookies(accounts.store.secret)
        self.limiter = LoginLimiter(
            accounts.logins,
            per_client=settings.login_max_failures_client,
            per_account=settings.login_max_failures_account,
            window=settings.login_window,
        )
        self.templates = Environment(
            loader=FileSystemLoader(HERE / "templates"),
            autoescape=select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.templates.filters["when"] = _when
        self.templates.globals["scope_summary"] = scope_summary

    def refuse(self, refusal: Refusal, request: Request) -> Response:
        """The pages' dialect: an HTML error page, or the way to the login form."""
        if isinstance(refusal, LoginRequired):
            return redirect(f"/login?next={quote(refusal.path, safe='/')}", 303)
        return self._error(request, refusal.status, refusal.message)

    def finish(self, request: Request, response: Response) -> Response:
        """Every page, error pages too, carries the security headers."""
        if not request.path.startswith("/static/"):
            for header, value in SECURITY_HEADERS.items():
                response.headers.setdefault(header, value)
        return response

    # Rendering

    def _render(
        self,
        request: Request,
        template: str,
        session: Session | None,
        status: int = 200,
        **context: object,
    ) -> Response:
        html = self.templates.get_template(template).render(
            session=session, user=session.user if session else None, **context
        )
        return Response(html, status=status, mimetype="text/html")

    def _error(self, request: Request, status: int, message: str) -> Response:
        session = self._session(request)
        return self._render(
            request, "error.html", session, status, status_code=status, message=message
        )

    def _secure(self, request: Request) -> bool:
        return request.scheme == "https"

    # Sessions

    def _session(self, request: Request) -> Session | None:
        """The request's session; a logged-in one only while the password is unchanged
        and the user is not disabled (both read on every request)."""
        session = self.cookies.load(request)
        if session is None or session.user is None:
            return session
        try:
            row = self.accounts.users.get(session.user)
        except AccountNotFound:
            return Session(csrf=session.csrf)
        if row.disabled_at is not None or session.password_tag != password_tag(row.password_hash):
            return Session(csrf=session.csrf)
        request.environ[USER] = session.user
        return session

    def _logged_in(self, request: Request) -> Session:
        session = self._session(request)
        if session is None or session.user is None:
            raise LoginRequired(request.path)
        return session

    def _actor(self, session: Session) -> Actor:
        """Who changes a token from a browser session: its user, with no token."""
        assert session.user is not None
        return Actor(self.accounts.users.get(session.user).id, None)

    @staticmethod
    def _check_csrf(request: Request, session: Session | None) -> None:
        if not csrf_matches(session, request.form.get("csrf_token")):
            raise Refusal(
                403,
                "This form was not sent from this site, or it expired. "
                "Reload the page and try again.",
            )

    # Login and logout

    def login(self, request: Request) -> Response:
        session = self._session(request)
        next_url = _safe_next(request.values.get("next"))
        if request.method == "GET":
            if session is not None and session.user is not None:
                return redirect(next_url, 303)
            fresh = session or self.cookies.new()
            response = self._render(request, "login.html", fresh, next_url=next_url)
            if session is None:
                self.cookies.save(response, fresh, secure=self._secure(request))
            return response
        self._check_csrf(request, session)
        username = request.form.get("username", "").strip()
        password = request.form.get("password", "")
        client = request.remote_addr or "unknown"
        known = (self.cookies.device_user(request) or "") == username.lower() != ""
        wait = self.limiter.retry_after(client, username, known_device=known)
        if wait is not None:
            minutes = max(1, round(wait / 60))
            response = self._render(
                request,
                "login.html",
                session,
                429,
                next_url=next_url,
                username=username,
                error=f"Too many failed logins. Try again in about {minutes} minute"
                f"{'s' if minutes != 1 else ''}.",
            )
            response.headers["Retry-After"] = str(wait)
            return response
        canonical = self.accounts.users.verify_password(username, password) if username else None
        if canonical is None:
            self.limiter.failed(client, username)
            return self._render(
                request,
                "login.html",
                session,
                401,
                next_url=next_url,
                username=username,
                error="Wrong username or password.",
            )
        self.limiter.succeeded(client, username)
        row = self.accounts.users.get(canonical)
        if row.disabled_at is not None:
            return self._render(
                request,
                "login.html",
                session,
                403,
                next_url=next_url,
                username=username,
                error="This account is disabled. Ask an administrator of this server.",
            )
        fresh = self.cookies.new(canonical, password_tag(row.password_hash))
        response = redirect(next_url, 303)
        secure = self._secure(request)
        self.cookies.save(response, fresh, secure=secure)
        self.cookies.remember_device(response, canonical, secure=secure)
        return response

    def logout(self, request: Request) -> Response:
        self._check_csrf(request, self._session(request))
        response = redirect("/login", 303)
        self.cookies.clear(response, secure=self._secure(request))
        return response

    # Tokens

    def settings(self, request: Request) -> Response:
        return redirect("/settings/tokens", 303)

    def _tokens_page(
        self,
        request: Request,
        session: Session,
        status: int = 200,
        **context: object,
    ) -> Response:
        assert session.user is not None
        form = context.pop("form", None) or _empty_form(session.user)
        return self._render(
            request,
            "tokens.html",
            session,
            status,
            tokens=self.accounts.tokens.list(session.user),
            form=form,
            now=time.time(),
            scope_kinds=policy.SCOPE_KINDS,
            **context,
        )

    def tokens(self, request: Request) -> Response:
        return self._tokens_page(request, self._logged_in(request))

    def new_token(self, request: Request) -> Response:
        session = self._logged_in(request)
        self._check_csrf(request, session)
        assert session.user is not None
        form = _read_form(request)
        if request.form.get("action") == "add_row":
            form["rows"] = min(MAX_SCOPE_ROWS, form["rows"] + 1)
            return self._tokens_page(request, session, form=form, open_form=True)
        try:
            scopes = _form_scopes(form) if form["role"] == "fineGrained" else []
            expires = _form_expiry(form["expires_days"])
            secret, record = self.accounts.tokens.create(
                session.user,
                form["name"],
                form["role"],
                scopes=scopes,
                can_read_gated=form["role"] == "fineGrained" and form["can_read_gated"],
                expires_in_days=expires,
                actor=self._actor(session),
            )
        except (FormError, InvalidInput, Conflict, AccountNotFound) as exc:
            return self._tokens_page(
                request, session, 400, form=form, error=str(exc), open_form=True
            )
        return self._tokens_page(request, session, shown=(record.name, secret), created=True)

    def token_action(self, request: Request, token_id: int, action: str) -> Response:
        session = self._logged_in(request)
        if request.method == "POST":
            self._check_csrf(request, session)
        assert session.user is not None
        # Looked up among the session user's own tokens: another user's id is simply not found.
        token = self.accounts.tokens.get(session.user, token_id)
        if token is None:
            raise Refusal(404, "No such token among yours.")
        if request.method == "GET":
            return self._render(request, "confirm.html", session, token=token, action=action)
        try:
            actor = self._actor(session)
            if action == "delete":
                self.accounts.tokens.delete(session.user, token.name, actor=actor)
                return self._tokens_page(request, session, notice=f"Token {token.name!r} deleted.")
            secret = self.accounts.tokens.refresh(session.user, token.name, actor=actor)
        except AccountsError as exc:
            raise Refusal(404, str(exc)) from None
        return self._tokens_page(request, session, shown=(token.name, secret), refreshed=True)

    def static(self, request: Request, filename: str) -> Response:
        response = send_from_directory(STATIC_DIR, filename, request.environ, max_age=3600)
        response.headers["X-Content-Type-Options"] = "nosniff"
        return response


class LoginRequired(Refusal):
    """A page that needs a logged-in session: answered with the way to the login form."""

    def __init__(self, path: str) -> None:
        super().__init__(401, "Log in first.")
        self.path = path


def _safe_next(value: str | None) -> str:
    """Where to go after login: only our own settings pages, never another site."""
    if value and value.startswith("/settings") and "//" not in value and "\\" not in value:
        return value
    return "/settings/tokens"


def _empty_form(user: str) -> dict:
    return {
        "name": "",
        "role": "read",
        "expires_days": "",
        "can_read_gated": False,
        "rows": DEFAULT_SCOPE_ROWS,
        "scopes": [{"kind": "user", "entity": user, "read": False, "write": False}],
    }


def _read_form(request: Request) -> dict:
    form = request.form
    try:
        rows = int(form.get("rows", DEFAULT_SCOPE_ROWS))
    except ValueError:
        rows = DEFAULT_SCOPE_ROWS
    rows = max(1, min(MAX_SCOPE_ROWS, rows))
    scopes = [
        {
            "kind": form.get(f"scope_kind_{i}", "model"),
            "entity": form.get(f"scope_entity_{i}", "").strip(),
            "read": f"scope_read_{i}" in form,
            "write": f"scope_write_{i}" in form,
        }
        for i in range(rows)
    ]
    return {
        "name": form.get("name", "").strip(),
        "role": form.get("role", ""),
        "expires_days": form.get("expires_days", "").strip(),
        "can_read_gated": "can_read_gated" in form,
        "rows": rows,
        "scopes": scopes,
    }


def _form_scopes(form: dict) -> list[policy.Scope]:
    """The scope rows that have a permission ticked; an entity is then required."""
    scopes = []
    for number, row in enumerate(form["scopes"], start=1):
        permissions = [
            perm
            for perm, ticked in ((policy.PERM_READ, row["read"]), (policy.PERM_WRITE, row["write"]))
            if ticked
        ]
        if not permissions:
            continue
        if not row["entity"]:
            raise FormError(f"Scope row {number}: name the user, organization or repository.")
        scopes.append(make_scope(row["kind"], row["entity"], permissions))
    if not scopes and not form["can_read_gated"]:
        raise FormError(
            "A fine-grained token needs at least one scope: tick a permission on a row, "
            "or allow reading gated repositories."
        )
    return scopes


def _form_expiry(value: str) -> float | None:
    if not value:
        return None
    try:
        days = float(value)
    except ValueError:
        raise FormError(f"Expiry {value!r} is not a number of days.") from None
    if not 0 < days <= 3650:
        raise FormError("The expiry must be between 1 and 3650 days, or empty for none.")
    return days
