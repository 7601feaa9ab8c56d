"""The WSGI application: canonical paths first, then one route per surface."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from werkzeug.middleware.proxy_fix import ProxyFix

from ..accounts import Accounts
from ..config import Settings
from ..names import is_canonical, parse_repo_path
from ..store import DatabaseUnavailable
from . import responses
from .api import ApiService
from .gate import Gate
from .git import GitService
from .lfs import LfsService
from .pages import PagesService

log = logging.getLogger(__name__)


class HfGitApp:
    """Routes a request to the API, the pages, LFS or git; every other path is a 404."""

    def __init__(self, settings: Settings, accounts: Accounts) -> None:
        self.settings = settings
        self.accounts = accounts
        self.gate = Gate(accounts)
        self.git = GitService(settings, accounts, self.gate)
        self.api = ApiService(accounts, self.gate)
        self.lfs = LfsService(settings, accounts, self.gate)
        self.pages = PagesService(settings, accounts)
        # Forwarded headers are believed only when configured: a client could forge them.
        self._handler = (
            ProxyFix(self._route, x_for=1, x_proto=1, x_host=1)
            if settings.trust_proxy
            else self._route
        )

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        try:
            return self._handler(environ, start_response)
        except DatabaseUnavailable:
            log.error("database unavailable while serving %s", environ.get("PATH_INFO"))
            return responses.text(503, responses.UNAVAILABLE_MESSAGE)(environ, start_response)

    def _route(self, environ: dict, start_response) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        raw = (environ.get("RAW_URI") or environ.get("REQUEST_URI") or path).split("?", 1)[0]
        if path != "/" and not (is_canonical(raw) and is_canonical(path)):
            return responses.text(400, "Non-canonical path.")(environ, start_response)
        if path == "/healthz":
            ok = self.accounts.store.ping()
            answer = (
                responses.text(200, "ok")
                if ok
                else responses.text(503, responses.UNAVAILABLE_MESSAGE)
            )
            return answer(environ, start_response)
        if path == "/":
            return responses.text(200, "hfgit: git over smart HTTP with user access tokens.")(
                environ, start_response
            )
        if path.startswith("/api/"):
            return self.api(environ, start_response)
        if self.pages.handles(path):
            return self.pages(environ, start_response)
        target = parse_repo_path(path)
        if target is not None and target.rest.startswith("info/lfs/"):
            return self.lfs(environ, start_response, target)
        if target is not None:
            return self.git(environ, start_response, target)
        return responses.text(404, "Not found.")(environ, start_response)


def create_app(settings: Settings | None = None, accounts: Accounts | None = None) -> HfGitApp:
    """Build the application; opens (and on first use creates) the data directory."""
    settings = settings or Settings.load()
    accounts = accounts or Accounts.open(settings)
    return HfGitApp(settings, accounts)
