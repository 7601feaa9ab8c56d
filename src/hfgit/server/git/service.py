"""Git smart HTTP behind the gate: ``info/refs?service=…`` and the two services' POSTs.

Read *and* write are decided at ``GET info/refs``, where git shows a ``text/plain`` body
to the user, and decided again on the POST. The engine chosen in the settings answers
once the gate has said yes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable

from dulwich.errors import GitProtocolError, HangupException, NotGitRepository
from dulwich.protocol import pkt_line
from dulwich.repo import Repo
from werkzeug.wrappers import Request, Response

from ...accounts import Accounts, Actor
from ...config import Settings
from ...names import RepoId
from ...policy import Action
from ...store import DatabaseUnavailable
from .. import responses
from ..body import open_body
from ..gate import Gate
from ..refusal import Refusal
from ..surface import Surface
from .advertise import advertisement
from .engines import RECEIVE_PACK, UPLOAD_PACK, EngineContext, GitSession, service_handlers
from .gitproc import GitBinary
from .push import PushLimits
from .refs import Command
from .wants import FetchLimits, FetchRefused

log = logging.getLogger(__name__)

SERVICES: dict[str, Action] = {UPLOAD_PACK: Action.READ, RECEIVE_PACK: Action.WRITE}
NOT_SERVED = "Not found. hfgit serves git over the smart HTTP protocol only."
NO_CACHE = "no-cache, max-age=0, must-revalidate"
#: The one ``Git-Protocol`` value acted on, byte for byte (as Gitaly does); any other
#: value is ignored and the answer is v0. Nothing else from the client reaches git.
PROTOCOL_V2 = "version=2"


class GitService(Surface):
    def __init__(self, settings: Settings, accounts: Accounts, gate: Gate) -> None:
        self.settings = settings
        self.accounts = accounts
        self.gate = gate
        context = EngineContext(
            FetchLimits.from_settings(settings),
            PushLimits.from_settings(settings),
            self._record_push,
            git=GitBinary.find(settings.data_dir),
            max_pack_processes=settings.max_pack_processes,
            live_tokens=accounts.lookups.live_tokens,
        )
        self.handlers = service_handlers(settings.git_engine, context)

    def refuse(self, refusal: Refusal, request: Request) -> Response:
        """git's dialect: ``text/plain``, shown as ``remote:`` lines on ``info/refs``."""
        return responses.text(refusal.status, refusal.message, challenge=refusal.challenge)

    # Endpoints

    def info_refs(self, request: Request, repo: RepoId) -> Response:
        service = request.args.get("service") or None
        if service is None:
            raise Refusal(404, NOT_SERVED)
        if service not in SERVICES:
            raise Refusal(403, "Unsupported service: use git-upload-pack or git-receive-pack.")
        session = self._open(request, repo, service)
        with session.repo:
            body = advertisement(self.handlers[service], session)
        response = Response(body, mimetype=f"application/x-{service}-advertisement")
        response.headers["Cache-Control"] = NO_CACHE
        return response

    def upload_pack(self, request: Request, repo: RepoId):
        return self._serve(request, repo, UPLOAD_PACK, self.settings.max_fetch_request_bytes)

    def receive_pack(self, request: Request, repo: RepoId):
        return self._serve(request, repo, RECEIVE_PACK, self.settings.max_push_bytes)

    # The work

    def _open(self, request: Request, repo_id: RepoId, service: str) -> GitSession:
        access = self.gate.authorize(request.environ, repo_id, SERVICES[service])
        assert access.repo is not None
        try:
            repo = Repo(str(self.accounts.repos.path(access.repo)), bare=True)
        except (NotGitRepository, ValueError, OSError) as error:
            # Missing, or unreadable (dulwich raises ValueError on a broken config).
            log.error("repository storage unusable for %s: %s", access.repo.repo_id, error)
            raise Refusal(503, "This repository's storage is unavailable.") from None
        v2 = request.headers.get("Git-Protocol") == PROTOCOL_V2
        return GitSession(service, repo, access.repo, access.caller, protocol_v2=v2)

    def _serve(self, request: Request, repo_id: RepoId, service: str, limit: int):
        session = self._open(request, repo_id, service)
        try:
            if request.content_type != f"application/x-{service}-request":
                raise Refusal(415, f"Expected Content-Type application/x-{service}-request.")
            read = open_body(request.environ, limit)
        except Refusal:
            session.repo.close()
            raise
        _limit_silence(request.environ, self.settings.body_read_timeout)

        def answer(environ: dict, start_response) -> Iterable[bytes]:
            with session.repo:
                return self._stream(request, session, read, start_response)

        return answer

    def _stream(
        self, request: Request, session: GitSession, read, start_response
    ) -> Iterable[bytes]:
        """Run the engine, sending its output as it comes.

        The status line goes out with the first byte of the answer, so a request refused
        before that still gets a proper 4xx.
        """
        service = session.service
        write: Callable[[bytes], object] | None = None

        def write_out(data: bytes) -> int:
            nonlocal write
            if write is None:
                write = start_response(
                    "200 OK",
                    [
                        ("Content-Type", f"application/x-{service}-result"),
                        ("Cache-Control", NO_CACHE),
                    ],
                )
            write(data)
            return len(data)

        refusal: Refusal | None = None
        try:
            self.handlers[service].serve(session, read, write_out)
        except FetchRefused as error:
            # Raised only while reading wants and haves, before any pack data: git shows
            # an ERR line there as "remote error: …", the only answer it reads on a POST.
            write_out(pkt_line(b"ERR " + str(error).encode("utf-8", "replace") + b"\n"))
        except Refusal as error:
            refusal, cause = error, error
        except (GitProtocolError, HangupException, ValueError, KeyError) as error:
            refusal, cause = Refusal(400, f"Malformed {service} request."), error
        except OSError as error:
            # The client went away or stayed silent past the read timeout.
            refusal, cause = Refusal(408, f"{service} request body timed out or broke off."), error
        if refusal is not None:
            # Refused before any answer is the client's doing as a rule (a malformed
            # request), but the cause must be in the log: a 400 alone says nothing.
            level = logging.INFO if write is None else logging.WARNING
            log.log(level, "%s on %s stopped: %r", service, session.record.repo_id, cause)
            if write is None:
                return self.refuse(refusal, request)(request.environ, start_response)
        if write is None:
            write_out(b"")
        return []

    def _record_push(self, session: GitSession, refs: list[Command]) -> None:
        caller = session.caller
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
                repo_id=session.record.id,
                detail=detail,
            )
        except DatabaseUnavailable:
            # The refs have moved: failing the push now would tell git a lie.
            log.error(
                "push to %s landed but was not audited: database unavailable", session.record.id
            )


def _limit_silence(environ: dict, seconds: int) -> None:
    """Give up on a client that stops sending its body (or reading the answer).

    gunicorn's gthread worker reads request bodies on a blocking socket with no
    timeout, so a slow client would hold a worker thread forever; the worker resets
    the socket's mode for the next request on the connection.
    """
    sock = environ.get("gunicorn.socket")
    if sock is not None:
        sock.settimeout(seconds)
