"""Plain-text answers: git shows them as ``remote:`` lines, and the site speaks them too."""

from __future__ import annotations

from werkzeug.wrappers import Response

REALM = "hfgit"

UNAVAILABLE_MESSAGE = "hfgit cannot reach its database right now; try again shortly."


def text(status: int, message: str, *, challenge: bool = False) -> Response:
    """A ``text/plain`` answer; git shows its lines as ``remote:`` on info/refs."""
    response = Response(message.rstrip("\n") + "\n", status=status, mimetype="text/plain")
    if challenge:
        response.headers["WWW-Authenticate"] = f'Basic realm="{REALM}"'
    response.headers["Cache-Control"] = "no-cache, max-age=0, must-revalidate"
    return response
