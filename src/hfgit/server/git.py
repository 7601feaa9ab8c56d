"""Git smart HTTP over dulwich's protocol handlers, behind the gate.

Only ``info/refs?service=…``, ``git-upload-pack`` and ``git-receive-pack`` are served;
dulwich's dumb-protocol routes would hand out objects to anyone. Read *and* write are
decided at ``GET info/refs``, where git shows a ``text/plain`` body to the user, and
decided again on the POST.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from io import BytesIO
from urllib.parse import parse_qs

from dulwich.errors import GitProtocolError, HangupException, NotGitRepository
from dulwich.protocol import ReceivableProtocol
from dulwich.repo import Repo
from dulwich.server import Backend
from werkzeug.wrappers import Response

from ..accounts import Accounts, Actor, AuthError, Caller, RepoRecord
from ..config import Settings
from ..names import RepoPath
from ..policy import Action
from ..store import DatabaseUnavailable
from . import responses
from .body import BodyError, open_body
from .gate import Gate
from .receive import HardenedReceivePackHandler, PushLimits
from .upload import FetchLimits, FetchRefused, HardenedUploadPackHandler

log = logging.getLogger(__name__)

SERVICES: dict[str, Action] = {
    "git-upload-pack": Action.READ,
    "git-receive-pack": Action.WRITE,
}
NOT_SERVED = "Not found. hfgit serves git over the smart HTTP protocol only."


class OneRepoBackend(Backend):
    """Hands dulwich exactly the repository the gate resolved, whatever path it asks for."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo

    def open_repository(self, path: str) -> Repo:
        return self.repo


class AuditedReceivePackHandler(HardenedReceivePackHandler):
    """The hardened receive-pack, recording which refs a push moved."""

    def __init__(
        self, *args, on_push: Callable[[list[tuple[bytes, bytes, bytes]]], None], **kwargs
    ):
        super().__init__(*args, **kwargs)
        self._on_push = on_push

    def _on_post_receive(self, client_refs) -> None:
        self._on_push(list(client_refs))


class GitService:
    def __init__(self, settings: Settings, accounts: Accounts, gate: Gate) -> None:
        self.settings = settings
        self.accounts = accounts
        self.gate = gate
        self.fetch_limits = FetchLimits.from_settings(settings)
        self.push_limits = PushLimits.from_settings(settings)

    def __call__(self, environ: dict, start_response, target: RepoPath) -> Iterable[bytes]:
        method = environ["REQUEST_METHOD"]
        if target.rest == "info/refs":
            service = parse_qs(environ.get("QUERY_STRING", "")).get("service", [None])[0]
            if service is None:
                return responses.text(404, NOT_SERVED)(environ, start_response)
            if method != "GET":
                return responses.text(405, "Use GET for info/refs.")(environ, start_response)
        elif target.rest in SERVICES:
            service = target.rest
            if method != "POST":
                return responses.text(405, f"Use POST for {service}.")(environ, start_response)
        else:
            return responses.text(404, NOT_SERVED)(environ, start_response)
        if service not in SERVICES:
            return responses.text(
                403, "Unsupported service: use git-upload-pack or git-receive-pack."
            )(environ, start_response)

        try:
            caller = self.gate.caller(environ)
        except AuthError as error:
            return responses.git_auth_failed(error)(environ, start_response)
        access = self.gate.check(caller, target.repo, SERVICES[service])
        if not access.decision:
            return responses.git_denied(access.decision)(environ, start_response)
        assert access.repo is not None
        try:
            repo = Repo(str(self.accounts.repos.path(access.repo)), bare=True)
        except NotGitRepository:
            log.error("repository storage missing for %s", access.repo.repo_id)
            return responses.text(503, "This repository's storage is unavailable.")(
                environ, start_response
            )
        with repo:
            if target.rest == "info/refs":
                return self._advertise(
                    environ, start_response, repo, service, access.caller, access.repo
                )
            return self._serve(environ, start_response, repo, service, access.caller, access.repo)

    def _handler(
        self, service: str, repo: Repo, proto, caller: Caller | None, record: RepoRecord, **kw
    ):
        backend = OneRepoBackend(repo)
        if service == "git-upload-pack":
            return HardenedUploadPackHandler(
                backend,
                ["/"],
                proto,
                stateless_rpc=True,
                limits=self.fetch_limits,
                **kw,
            )
        return AuditedReceivePackHandler(
            backend,
            ["/"],
            proto,
            stateless_rpc=True,
            limits=self.push_limits,
            on_push=lambda refs: self._audit_push(caller, record, refs),
            **kw,
        )

    def _advertise(
        self,
        environ: dict,
        start_response,
        repo: Repo,
        service: str,
        caller: Caller | None,
        record: RepoRecord,
    ) -> Iterable[bytes]:
        out = BytesIO()
        proto = ReceivableProtocol(BytesIO().read, out.write)
        proto.write_pkt_line(b"# service=" + service.encode("ascii") + b"\n")
        proto.write_pkt_line(None)
        self._handler(service, repo, proto, caller, record, advertise_refs=True).handle()
        response = Response(out.getvalue(), mimetype=f"application/x-{service}-advertisement")
        response.headers["Cache-Control"] = "no-cache, max-age=0, must-revalidate"
        return response(environ, start_response)

    def _serve(
        self,
        environ: dict,
        start_response,
        repo: Repo,
        service: str,
        caller: Caller | None,
        record: RepoRecord,
    ) -> Iterable[bytes]:
        if environ.get("CONTENT_TYPE") != f"application/x-{service}-request":
            return responses.text(415, f"Expected Content-Type application/x-{service}-request.")(
                environ, start_response
            )
        limit = (
            self.settings.max_push_bytes
            if service == "git-receive-pack"
            else self.settings.max_fetch_request_bytes
        )
        try:
            read = open_body(environ, limit)
        except BodyError as error:
            return responses.text(error.status, str(error))(environ, start_response)
        _limit_silence(environ, self.settings.body_read_timeout)

        write: Callable[[bytes], object] | None = None

        def write_fn(data: bytes) -> int:
            # The status line goes out with the first byte of the answer, so a request
            # refused before that still gets a proper 4xx.
            nonlocal write
            if write is None:
                write = start_response(
                    "200 OK",
                    [
                        ("Content-Type", f"application/x-{service}-result"),
                        ("Cache-Control", "no-cache, max-age=0, must-revalidate"),
                    ],
                )
            write(data)
            return len(data)

        proto = ReceivableProtocol(read, write_fn)
        try:
            self._handler(service, repo, proto, caller, record).handle()
        except BodyError as error:
            if write is None:
                return responses.text(error.status, str(error))(environ, start_response)
            log.warning("%s on %s stopped: %s", service, record.repo_id, error)
        except FetchRefused as error:
            # Raised only while reading wants and haves, before any pack data: git shows
            # an ERR line there as "remote error: …", the only answer it reads on a POST.
            proto.write_pkt_line(b"ERR " + str(error).encode("utf-8", "replace") + b"\n")
        except (GitProtocolError, HangupException, ValueError, KeyError) as error:
            if write is None:
                return responses.text(400, f"Malformed {service} request.")(environ, start_response)
            log.warning("%s on %s stopped: %s", service, record.repo_id, error)
        except OSError as error:
            # The client went away or stayed silent past the read timeout.
            if write is None:
                return responses.text(408, f"{service} request body timed out or broke off.")(
                    environ, start_response
                )
            log.warning("%s on %s stopped: %s", service, record.repo_id, error)
        if write is None:
            write_fn(b"")
        return []

    def _audit_push(self, caller: Caller | None, record: RepoRecord, refs) -> None:
        detail = {
            "refs": [
                {"ref": ref.decode("utf-8", "replace"), "old": old.decode(), "new": new.decode()}
                for old, new, ref in refs
            ]
        }
        try:
            self.accounts.audit.append(
                "push",
                actor=Actor(caller.user_id, caller.token_id) if caller else None,
                repo_id=record.id,
                detail=detail,
            )
        except DatabaseUnavailable:
            # The refs have moved: failing the push now would tell git a lie.
            log.error("push to %s landed but was not audited: database unavailable", record.id)


def _limit_silence(environ: dict, seconds: int) -> None:
    """Give up on a client that stops sending its body (or reading the answer).

    gunicorn's gthread worker reads request bodies on a blocking socket with no
    timeout, so a slow client would hold a worker thread forever; the worker resets
    the socket's mode for the next request on the connection.
    """
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        sock.settimeout(seconds)
