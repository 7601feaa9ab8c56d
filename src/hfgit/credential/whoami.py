"""``GET /api/whoami-v2``: who a token belongs to and what it may do (client side only).

Used by ``hfgit login`` to validate a token and record its account name and fine-grained
scopes, and by ``hfgit whoami``. Redirects are refused: urllib would forward the
Authorization header to wherever the server points, and a token must reach one origin.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime

from hfgit.credential.select import format_scopes


class WhoamiError(Exception):
    """The server refused the token or could not be asked; the message says which."""


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # urllib then raises HTTPError for the 3xx itself


def fetch(endpoint: str, token: str, timeout: float = 20) -> dict | None:
    """The whoami document, or None when the server does not offer the route (404/405)."""
    # ``endpoint`` is always a canonical https:// or http:// origin (origin.origin_url).
    request = urllib.request.Request(  # noqa: S310
        f"{endpoint}/api/whoami-v2",
        headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=timeout) as response:
            data = json.loads(response.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        if exc.code in (404, 405):
            return None
        if exc.code == 401:
            raise WhoamiError(f"{endpoint} rejected this token (HTTP 401)") from None
        if 300 <= exc.code < 400:
            raise WhoamiError(f"{endpoint} redirected; not following it with a token") from None
        raise WhoamiError(f"{endpoint} answered HTTP {exc.code} to /api/whoami-v2") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise WhoamiError(f"cannot reach {endpoint}: {reason}") from None
    except (ValueError, UnicodeDecodeError):
        raise WhoamiError(f"{endpoint} did not answer /api/whoami-v2 with JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("name"), str):
        raise WhoamiError(f"{endpoint} answered /api/whoami-v2 without an account name")
    return data


def access_token(data: dict) -> dict:
    """The ``auth.accessToken`` part (empty when the server did not describe the token)."""
    auth = data.get("auth") if isinstance(data.get("auth"), dict) else {}
    token = auth.get("accessToken")
    return token if isinstance(token, dict) else {}


def expires(data: dict) -> str:
    """Unix seconds from ``auth.accessToken.expiresAt`` (ISO 8601) if the server sends it.

    The Hub does not document this field; servers that send it let the helper pass
    ``password_expiry_utc`` to git, which then drops the token on time by itself.
    """
    value = access_token(data).get("expiresAt")
    if not isinstance(value, str):
        return ""
    try:
        return str(int(datetime.fromisoformat(value).timestamp()))
    except ValueError:
        return ""


def scopes(data: dict) -> str:
    """Fine-grained scopes in the compact form login records keep (see ``select``)."""
    fine = access_token(data).get("fineGrained")
    if not isinstance(fine, dict):
        return ""
    items = []
    for scope in fine.get("scoped") or []:
        entity = scope.get("entity") if isinstance(scope, dict) else None
        if isinstance(entity, dict):
            perms = [p for p in scope.get("permissions") or [] if isinstance(p, str)]
            items.append((str(entity.get("type", "")), str(entity.get("name", "")), perms))
    return format_scopes(items)
