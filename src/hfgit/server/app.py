"""The WSGI application: canonical paths first, then the one route table, then one surface.

Every endpoint of :data:`~.routes.URL_MAP` names a surface and a handler. The handler
answers, or raises :class:`~.refusal.Refusal`, which that surface renders in its own
dialect; errors of the layers below (names, accounts, LFS) become refusals on the way.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.middleware.proxy_fix import ProxyFix
from werkzeug.wrappers import Request, Response

from .. import metrics
from ..accounts import Accounts
from ..config import Settings
from ..names import is_canonical
from ..store import DatabaseUnavailable
from . import rawpath, responses
from .api import ApiService
from .body import check_transfer_coding
from .files import FilesService
from .gate import AuthLimits, Gate
from .git.service import NOT_SERVED, GitService
from .lfs import LfsService
from .observe import REPO, ROUTE, Observed
from .pages import PagesService
from .refusal import DOMAIN_ERRORS, Refusal, refusal_for
from .repoinfo import RepoInfoService
from .routes import URL_MAP, surface_of
from .surface import Surface

log = logging.getLogger(__name__)

#: What each surface says for a URL the table does not have.
NOT_FOUND = {
    "git": NOT_SERVED,
    "lfs": "Not found. hfgit serves the LFS batch API with basic transfers.",
}


class SiteService(Surface):
    """The root page and the health check: plain text."""

    def __init__(self, accounts: Accounts) -> None:
        self.accounts = accounts

    def refuse(self, refusal: Refusal, request: Request) -> Response:
        return responses.text(refusal.status, refusal.message)

    def index(self, request: Request) -> Response:
        return responses.text(200, "hfgit: git over smart HTTP with user access tokens.")

    def healthz(self, request: Request) -> Response:
        if not self.accounts.store.ping():
            raise Refusal(503, responses.UNAVAILABLE_MESSAGE)
        return responses.text(200, "ok")


class HfGitApp:
    """Matches a request in the route table and hands it to its surface's handler."""

    def __init__(self, settings: Settings, accounts: Accounts) -> None:
        self.settings = settings
        self.accounts = accounts
        self.gate = Gate(accounts, AuthLimits.from_settings(settings))
        self.git = GitService(settings, accounts, self.gate)
        self.lfs = LfsService(settings, accounts, self.gate)
        self.api = ApiService(accounts, self.gate, settings)
        self.files = FilesService(settings, accounts, self.gate, self.lfs)
        self.repoinfo = RepoInfoService(settings, accounts, self.gate, self.lfs)
        self.pages = PagesService(settings, accounts)
        self.site = SiteService(accounts)
        self.surfaces: dict[str, Surface] = {
            "git": self.git,
            "lfs": self.lfs,
            "api": self.api,
            "files": self.files,
            "repoinfo": self.repoinfo,
            "pages": self.pages,
            "site": self.site,
        }
        self.handlers = {
            rule.endpoint: _handler(self.surfaces, rule.endpoint) for rule in URL_MAP.iter_rules()
        }
        # Forwarded headers are believed only when configured: a client could forge them.
        self._handler = (
            ProxyFix(self._dispatch, x_for=1, x_proto=1, x_host=1)
            if settings.trust_proxy
            else self._dispatch
        )
        self._observed = Observed(self._serve)

    def __call__(self, environ: dict, start_response) -> Iterable[bytes]:
        return self._observed(environ, start_response)

    def _serve(self, environ: dict, start_response) -> Iterable[bytes]:
        try:
            return self._handler(environ, start_response)
        except DatabaseUnavailable:
            metrics.DATABASE_ERRORS.inc()
            log.error("database unavailable while serving %s", environ.get("PATH_INFO"))
            return responses.text(503, responses.UNAVAILABLE_MESSAGE)(environ, start_response)

    def _dispatch(self, environ: dict, start_response) -> Iterable[bytes]:
        path = environ.get("PATH_INFO") or "/"
        raw = rawpath.raw_path(environ)
        tail = rawpath.tail_start(raw)
        if tail is not None:
            # The file API: the repository part must be canonical and unencoded; the
            # revision and file path after it are decoded segment by segment by its
            # handlers, so the table matches the raw path (``feat%2Fx`` is one segment).
            if not is_canonical(raw[: tail - 1]) or "//" in raw[tail - 1 :]:
                return responses.text(400, "Non-canonical path.")(environ, start_response)
            path = raw
        elif path != "/" and not (is_canonical(raw) and is_canonical(path)):
            return responses.text(400, "Non-canonical path.")(environ, start_response)
        urls = URL_MAP.bind_to_environ(environ)
        try:
            endpoint, args = urls.match(path_info=path)
        except NotFound:
            return self._not_found(path, environ, start_response)
        except MethodNotAllowed as error:
            allowed = sorted(error.valid_methods or ())
            try:
                surface = (
                    urls.match(path_info=path, method=allowed[0])[0].partition(".")[0]
                    if allowed
                    else "site"
                )
            except NotFound:
                # The path fits a rule of another method only until its converters
                # look at the values (a repository name that cannot be one): no such URL.
                return self._not_found(path, environ, start_response)
            refusal = Refusal(405, f"Use {' or '.join(allowed)} for this URL.")
            return self._refuse(surface, refusal, environ, start_response)
        environ[ROUTE] = endpoint
        if "repo" in args:
            environ[REPO] = str(args["repo"])
        surface = self.surfaces[endpoint.partition(".")[0]]
        request = surface.request_class(environ)
        try:
            check_transfer_coding(environ)
            answer = self.handlers[endpoint](request, **args)
        except Refusal as refusal:
            answer = _render(surface, refusal, request)
        except DOMAIN_ERRORS as error:
            answer = _render(surface, refusal_for(error), request)
        except HTTPException as error:  # from werkzeug's parsers: a body over its limit
            refusal = Refusal(error.code or 400, error.description or "Bad request.")
            answer = _render(surface, refusal, request)
        if isinstance(answer, Response):
            answer = surface.finish(request, answer)
        return answer(environ, start_response)

    def _not_found(self, path: str, environ: dict, start_response):
        surface = surface_of(path)
        refusal = Refusal(404, NOT_FOUND.get(surface, "Not found."))
        return self._refuse(surface, refusal, environ, start_response)

    def _refuse(self, name: str, refusal: Refusal, environ: dict, start_response):
        surface = self.surfaces[name]
        request = surface.request_class(environ)
        response = surface.finish(request, _render(surface, refusal, request))
        return response(environ, start_response)


def _render(surface: Surface, refusal: Refusal, request: Request) -> Response:
    """The surface's own rendering of ``refusal``, plus what every dialect shares."""
    response = surface.refuse(refusal, request)
    if refusal.retry_after is not None:
        response.headers["Retry-After"] = str(refusal.retry_after)
    return response


def _handler(surfaces: dict[str, Surface], endpoint: str) -> Callable[..., object]:
    """The handler an endpoint names: a method of the surface's class.

    Looked up on the class, not the instance, so that an attribute of the same name
    (``PagesService.settings``, its configuration) never stands in for the handler.
    """
    surface_name, _, name = endpoint.partition(".")
    surface = surfaces[surface_name]
    function = getattr(type(surface), name, None)
    if not callable(function):
        raise TypeError(f"route endpoint {endpoint!r} names no handler of {type(surface).__name__}")
    return function.__get__(surface)


def create_app(settings: Settings | None = None, accounts: Accounts | None = None) -> HfGitApp:
    """Build the application; opens (and on first use creates) the data directory."""
    settings = settings or Settings.load()
    accounts = accounts or Accounts.open(settings)
    return HfGitApp(settings, accounts)
