"""The answers every surface shares: plain text for git, JSON with error headers for the API."""

from __future__ import annotations

import json

from werkzeug.wrappers import Response

from ..accounts import AuthError
from ..policy import Deny

REALM = "hfgit"

GIT_AUTH_MESSAGES = {
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
#: huggingface_hub tells a bad token from a hidden repo by this exact text.
API_INVALID_CREDENTIALS = "Invalid credentials in Authorization header"

UNAVAILABLE_MESSAGE = "hfgit cannot reach its database right now; try again shortly."


def text(status: int, message: str, *, challenge: bool = False) -> Response:
    """A ``text/plain`` answer; git shows its lines as ``remote:`` on info/refs."""
    response = Response(message.rstrip("\n") + "\n", status=status, mimetype="text/plain")
    if challenge:
        response.headers["WWW-Authenticate"] = f'Basic realm="{REALM}"'
    response.headers["Cache-Control"] = "no-cache, max-age=0, must-revalidate"
    return response


def git_denied(deny: Deny) -> Response:
    return text(deny.status, deny.message, challenge=deny.status == 401)


def git_auth_failed(error: AuthError) -> Response:
    return text(401, GIT_AUTH_MESSAGES[error.kind], challenge=True)


def json_error(
    status: int, message: str, code: str | None = None, *, challenge: bool = False
) -> Response:
    """An API error as the Hub sends it: JSON body plus ``X-Error-Code``/``X-Error-Message``."""
    response = Response(json.dumps({"error": message}), status=status, mimetype="application/json")
    response.headers["X-Error-Message"] = message
    if code:
        response.headers["X-Error-Code"] = code
    if challenge:
        response.headers["WWW-Authenticate"] = f'Basic realm="{REALM}"'
    return response


def api_denied(deny: Deny) -> Response:
    return json_error(deny.status, deny.message, deny.code)


def api_auth_failed(error: AuthError) -> Response:
    message = API_INVALID_CREDENTIALS if error.kind == "invalid" else GIT_AUTH_MESSAGES[error.kind]
    return json_error(401, message)
