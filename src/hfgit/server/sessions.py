"""Signed session cookies for the settings pages (itsdangerous).

The cookie holds the user name, the CSRF token of the session and a tag derived from the
password hash, so setting a new password ends every session opened with the old one.
It is signed with the server secret stored in the database, which every worker shares.
Nothing in it is secret by itself; the signature makes it unforgeable.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from werkzeug.wrappers import Request, Response

SESSION_COOKIE = "hfgit_session"
DEVICE_COOKIE = "hfgit_device"
#: A session lasts a working day; the device cookie, which only relaxes the per-account
#: login limit for a browser that logged in before, lasts longer.
SESSION_MAX_AGE = 12 * 3600
DEVICE_MAX_AGE = 90 * 86400


@dataclass(frozen=True)
class Session:
    csrf: str
    user: str | None = None
    password_tag: str | None = None


def password_tag(password_hash: str | None) -> str:
    """A short fingerprint of the password hash: changes whenever the password does."""
    return hashlib.sha256((password_hash or "").encode()).hexdigest()[:16]


def csrf_matches(session: Session | None, submitted: str | None) -> bool:
    return bool(
        session is not None
        and submitted
        and hmac.compare_digest(session.csrf.encode(), submitted.encode())
    )


class SessionCookies:
    """Reads and writes the session and device cookies."""

    def __init__(self, secret: Callable[[], bytes]) -> None:
        # The secret is read on first use, so a worker starts even while the database
        # is briefly unreachable; requests then fail closed with 503.
        self._secret = secret
        self._serializers: dict[str, URLSafeTimedSerializer] = {}

    def _serializer(self, salt: str) -> URLSafeTimedSerializer:
        if salt not in self._serializers:
            self._serializers[salt] = URLSafeTimedSerializer(self._secret(), salt=salt)
        return self._serializers[salt]

    def load(self, request: Request) -> Session | None:
        """The request's valid session, or None when absent, forged or expired."""
        value = request.cookies.get(SESSION_COOKIE)
        if not value:
            return None
        try:
            data = self._serializer("hfgit.session").loads(value, max_age=SESSION_MAX_AGE)
        except BadSignature:
            return None
        if not isinstance(data, dict) or not isinstance(data.get("c"), str):
            return None
        return Session(csrf=data["c"], user=data.get("u"), password_tag=data.get("p"))

    @staticmethod
    def new(user: str | None = None, tag: str | None = None) -> Session:
        """A fresh session with a new CSRF token (a new one at login defeats fixation)."""
        return Session(csrf=secrets.token_urlsafe(32), user=user, password_tag=tag)

    def save(self, response: Response, session: Session, *, secure: bool) -> None:
        value = self._serializer("hfgit.session").dumps(
            {"c": session.csrf, "u": session.user, "p": session.password_tag}
        )
        response.set_cookie(
            SESSION_COOKIE,
            value,
            max_age=SESSION_MAX_AGE,
            path="/",
            secure=secure,
            httponly=True,
            samesite="Lax",
        )

    def clear(self, response: Response, *, secure: bool) -> None:
        response.delete_cookie(
            SESSION_COOKIE, path="/", secure=secure, httponly=True, samesite="Lax"
        )

    def device_user(self, request: Request) -> str | None:
        """The user this browser once logged in as, from the device cookie."""
        value = request.cookies.get(DEVICE_COOKIE)
        if not value:
            return None
        try:
            user = self._serializer("hfgit.device").loads(value, max_age=DEVICE_MAX_AGE)
        except BadSignature:
            return None
        return user if isinstance(user, str) else None

    def remember_device(self, response: Response, user: str, *, secure: bool) -> None:
        response.set_cookie(
            DEVICE_COOKIE,
            self._serializer("hfgit.device").dumps(user.lower()),
            max_age=DEVICE_MAX_AGE,
            path="/login",
            secure=secure,
            httponly=True,
            samesite="Lax",
        )
