"""The base of every absolute URL the server hands out: LFS hrefs, API ``url``s, commit URLs.

A client's ``Host`` (or ``X-Forwarded-Host``) is not ours to repeat: an href built from
it sends the next request, with its signature, wherever the client (or anyone who can
poison a cache in between) said. So the base comes from configuration
(``HFGIT_PUBLIC_URL``, ``hfgit serve --public-url``), else from a trusted proxy's
forwarded headers (``HFGIT_TRUST_PROXY``, applied by ``ProxyFix``), else from the
address ``hfgit serve`` listens on.
"""

from __future__ import annotations

import logging

from werkzeug.wrappers import Request

from ..config import Settings
from .refusal import Refusal

log = logging.getLogger(__name__)

UNKNOWN = (
    "hfgit does not know the URL clients reach it at: set HFGIT_PUBLIC_URL "
    "(hfgit serve uses its listening address without it)."
)


def public_base(settings: Settings, request: Request) -> str:
    """``scheme://host[:port][/prefix]`` without a trailing slash, never from the client.

    Only an application embedded in another WSGI server with none of the three
    configured has no base; it answers 503 with what to set rather than guess.
    """
    if settings.public_url:
        return settings.public_url
    if settings.trust_proxy:
        return request.host_url.rstrip("/")
    if settings.listen_url:
        return settings.listen_url
    log.error("no public URL configured: set HFGIT_PUBLIC_URL")
    raise Refusal(503, UNKNOWN)
