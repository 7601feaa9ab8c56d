"""Git engines: what answers ``git-upload-pack`` and ``git-receive-pack`` once the gate said yes.

An engine is a factory that maps each service to a :class:`ServiceHandler`, given the
limits and the push recorder of :class:`EngineContext`. ``dulwich`` is built in: hfgit's
hardened dulwich handlers for both services; ``git`` (:mod:`.cgit`) answers fetches with
C git. Another engine plugs in with :func:`register` and is chosen by
``Settings.git_engine``; ``auto`` is ``git`` when a git binary is on PATH.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from io import BytesIO
from typing import Protocol

from dulwich.repo import Repo
from dulwich.server import Backend, Handler

from ...accounts import Caller, RepoRecord
from .fetch import HardenedUploadPackHandler
from .gitproc import GitBinary
from .protocol import StrictProtocol
from .push import HardenedReceivePackHandler, LiveTokens, PushLimits
from .reach import check_wants
from .refs import Command
from .wants import FetchLimits, FetchRequest, parse

UPLOAD_PACK = "git-upload-pack"
RECEIVE_PACK = "git-receive-pack"


@dataclass(frozen=True)
class GitSession:
    """One git request the gate allowed: the service, the repository opened, who asked."""

    service: str
    repo: Repo
    record: RepoRecord
    caller: Caller | None
    #: The client asked for protocol v2 (``Git-Protocol: version=2``); engines that do
    #: not speak it answer v0, and git falls back by itself.
    protocol_v2: bool = False


class ServiceHandler(Protocol):
    """Answers one git service statelessly, one HTTP request at a time."""

    def advertise(self, session: GitSession, write: Callable[[bytes], object]) -> None:
        """Write the ref advertisement that follows the ``# service=`` header."""

    def serve(
        self,
        session: GitSession,
        read: Callable[[int], bytes],
        write: Callable[[bytes], object],
    ) -> None:
        """Read one request body with ``read`` and write the whole answer with ``write``.

        Raise :class:`~hfgit.server.refusal.Refusal` to refuse before any answer is
        written, :class:`~.fetch.FetchRefused` for an in-protocol ``ERR``.
        """


@dataclass(frozen=True)
class EngineContext:
    """What every engine is built with."""

    fetch_limits: FetchLimits
    push_limits: PushLimits
    #: Called with the ref updates of every push that went through, for the audit.
    record_push: Callable[[GitSession, list[Command]], None]
    #: The git binary, if there is one: the ``git`` engine runs it, and both engines use
    #: it to check that wants are reachable.
    git: GitBinary | None = None
    #: Most pack generations at once on this host (``HFGIT_MAX_PACK_PROCESSES``).
    max_pack_processes: int = 1
    #: Which token-shaped strings are live tokens, for push protection (none: no scan).
    live_tokens: LiveTokens | None = None


Engine = Callable[[EngineContext], Mapping[str, ServiceHandler]]

ENGINES: dict[str, Engine] = {}


def register(name: str, engine: Engine) -> None:
    """Make ``engine`` available as ``Settings.git_engine == name``."""
    ENGINES[name] = engine


def resolve(name: str, git: GitBinary | None) -> str:
    """The engine ``name`` means: ``auto`` is ``git`` when there is a git binary."""
    if name == "auto":
        return "git" if git is not None else "dulwich"
    return name


def service_handlers(name: str, context: EngineContext) -> Mapping[str, ServiceHandler]:
    """The handlers of engine ``name`` (or ``auto``) for both services."""
    try:
        engine = ENGINES[resolve(name, context.git)]
    except KeyError:
        raise ValueError(
            f"Unknown git engine {name!r}: use one of {', '.join(sorted(ENGINES))}."
        ) from None
    return engine(context)


class OneRepoBackend(Backend):
    """Hands dulwich exactly the repository the gate resolved, whatever path it asks for."""

    def __init__(self, repo: Repo) -> None:
        self.repo = repo

    def open_repository(self, path: str) -> Repo:
        return self.repo


class DulwichUploadPack:
    """dulwich's upload-pack behind the fetch rules, statelessly over one HTTP request.

    The body (bounded, and only wants and haves) is read whole and checked by
    :mod:`.wants` and :mod:`.reach` first, as for the git engine; dulwich then reads it
    from memory. It speaks v0 only and advertises no ``filter``.
    """

    def __init__(self, context: EngineContext) -> None:
        self.context = context

    def _handler(self, session: GitSession, proto, **kwargs) -> Handler:
        return HardenedUploadPackHandler(
            OneRepoBackend(session.repo), ["/"], proto, stateless_rpc=True, **kwargs
        )

    def advertise(self, session: GitSession, write: Callable[[bytes], object]) -> None:
        self._handler(session, StrictProtocol(_no_input, write), advertise_refs=True).handle()

    def serve(
        self,
        session: GitSession,
        read: Callable[[int], bytes],
        write: Callable[[bytes], object],
    ) -> None:
        limits, git = self.context.fetch_limits, self.context.git
        checked = read_fetch(session, read, limits, git, v2=False, allow_filter=False)
        if checked is None:
            return
        body, request = checked
        proto = StrictProtocol(BytesIO(body).read, write)
        # Every want is allowed now, tips included: the refs dulwich reads next may have
        # moved since (a push landed), and a tip then is a want it would refuse.
        self._handler(session, proto, allowed=request.wants).handle()


class DulwichService:
    """A dulwich protocol handler, run statelessly over one HTTP request.

    ``make_handler(session, proto, **kwargs)`` builds the handler; ``kwargs`` carries
    ``advertise_refs=True`` for the advertisement.
    """

    def __init__(self, make_handler: Callable[..., Handler]) -> None:
        self.make_handler = make_handler

    def advertise(self, session: GitSession, write: Callable[[bytes], object]) -> None:
        proto = StrictProtocol(_no_input, write)
        self.make_handler(session, proto, advertise_refs=True).handle()

    def serve(
        self,
        session: GitSession,
        read: Callable[[int], bytes],
        write: Callable[[bytes], object],
    ) -> None:
        self.make_handler(session, StrictProtocol(read, write)).handle()


def _no_input(size: int = -1) -> bytes:
    return b""


def read_fetch(
    session: GitSession,
    read: Callable[[int], bytes],
    limits: FetchLimits,
    git: GitBinary | None,
    *,
    v2: bool,
    allow_filter: bool,
) -> tuple[bytes, FetchRequest] | None:
    """A fetch request read whole and held to the fetch rules, the same for every
    engine (:mod:`.wants`, then :func:`.reach.check_wants`); None when it asks nothing."""
    body = read_all(read)
    request = parse(body, limits, v2=v2, allow_filter=allow_filter)
    if request.command is None:
        return None
    check_wants(session.repo, request.wants, git)
    return body, request


def read_all(read: Callable[[int], bytes]) -> bytes:
    """The whole request body (the reader already bounds it)."""
    parts = []
    while chunk := read(64 * 1024):
        parts.append(chunk)
    return b"".join(parts)


def dulwich_engine(context: EngineContext) -> Mapping[str, ServiceHandler]:
    """hfgit's hardened dulwich handlers: bounded fetches, checked and atomic pushes."""

    def receive_pack(session: GitSession, proto, **kwargs) -> Handler:
        return HardenedReceivePackHandler(
            OneRepoBackend(session.repo),
            ["/"],
            proto,
            stateless_rpc=True,
            limits=context.push_limits,
            on_push=lambda refs: context.record_push(session, refs),
            live_tokens=context.live_tokens,
            **kwargs,
        )

    return {UPLOAD_PACK: DulwichUploadPack(context), RECEIVE_PACK: DulwichService(receive_pack)}


register("dulwich", dulwich_engine)
