"""The fetch rules, checked on the whole request body before any engine acts on it.

C git's protocol v2 serves any object that exists, and ``uploadpack.allowAnySHA1InWant``
does the same in v0; dulwich only serves current tips, which breaks a fetch whose tip
moved between the advertisement and the POST. Both engines therefore run this parser
first: every pkt-line is checked (framing, commands and capabilities from an allowlist,
line counts, ``deepen`` bounds, filter kinds), and every ``want`` must be a current tip
or an object reachable from one, as ``uploadpack.allowReachableSHA1InWant`` means.
Objects reachable only from deleted or force-pushed branches stay out of reach.

Refusals are :class:`FetchRefused`, answered in-protocol with ``ERR``.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field

from dulwich.errors import GitProtocolError

from ...config import Settings

#: git itself keeps depths in an int.
MAX_DEPTH = 2**31 - 1


class FetchRefused(GitProtocolError):
    """A fetch request we answer with ``ERR``; the message is shown to the user."""


@dataclass(frozen=True)
class FetchLimits:
    max_want_lines: int
    max_have_lines: int

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchLimits:
        return cls(max_want_lines=settings.max_want_lines, max_have_lines=settings.max_have_lines)


FLUSH, DELIM, RESPONSE_END = 0, 1, 2
_HEX_LENGTH = re.compile(rb"[0-9a-f]{4}")
_SHA = re.compile(rb"[0-9a-f]{40}")
#: A ref name or prefix as ``deepen-not``/``ref-prefix`` carry it: printable ASCII, no spaces.
_REFNAME = re.compile(rb"[!-~]{1,1024}")
_FILTERS = re.compile(rb"blob:none|blob:limit=[0-9]{1,18}[kmg]?|tree:[0-9]{1,9}")

#: v0 capabilities a client may ask for on a ``want`` line (``name`` or ``name=…``).
V0_CAPABILITIES = frozenset(
    {
        b"multi_ack",
        b"multi_ack_detailed",
        b"no-done",
        b"thin-pack",
        b"side-band",
        b"side-band-64k",
        b"ofs-delta",
        b"shallow",
        b"deepen-since",
        b"deepen-not",
        b"deepen-relative",
        b"no-progress",
        b"include-tag",
        b"allow-tip-sha1-in-want",
        b"allow-reachable-sha1-in-want",
        b"filter",
    }
)
_VALUED_CAPABILITIES = frozenset({b"agent", b"object-format", b"session-id"})
#: v2 request capabilities (the lines between the command and the delimiter).
_V2_CAPABILITIES = frozenset({b"agent", b"object-format", b"session-id", b"server-option"})
_V2_FETCH_FLAGS = frozenset(
    {
        b"done",
        b"thin-pack",
        b"no-progress",
        b"include-tag",
        b"ofs-delta",
        b"deepen-relative",
        b"wait-for-done",
    }
)
_V2_LS_REFS_FLAGS = frozenset({b"symrefs", b"peel", b"unborn"})


@dataclass
class FetchRequest:
    """What one upload-pack request asks for, once it passed the rules."""

    #: ``fetch`` (v0 or v2), ``ls-refs`` (v2), or None for an empty request.
    command: str | None
    wants: list[bytes] = field(default_factory=list)


def packets(body: bytes) -> Iterator[bytes | int]:
    """The pkt-lines of ``body``: payloads, or FLUSH/DELIM/RESPONSE_END.

    Stricter than git (lowercase hex only, no empty packets), never looser: what git
    would read differently is refused here.
    """
    pos = 0
    while pos < len(body):
        head = body[pos : pos + 4]
        if not _HEX_LENGTH.fullmatch(head):
            raise FetchRefused("upload-pack: malformed request (bad pkt-line length)")
        size = int(head, 16)
        if size in (FLUSH, DELIM, RESPONSE_END):
            yield size
            pos += 4
            continue
        if size <= 4 or pos + size > len(body):
            raise FetchRefused("upload-pack: malformed request (bad pkt-line length)")
        yield body[pos + 4 : pos + size]
        pos += size


def parse(body: bytes, limits: FetchLimits, *, v2: bool, allow_filter: bool) -> FetchRequest:
    """Check every line of an upload-pack request body against the fetch rules.

    Reachability of the wants is left to :func:`unreachable`, which needs the repository.
    """
    rules = _Rules(limits, allow_filter)
    lines = packets(body)
    return rules.v2(lines) if v2 else rules.v0(lines)


class _Rules:
    def __init__(self, limits: FetchLimits, allow_filter: bool) -> None:
        self.limits = limits
        self.allow_filter = allow_filter
        self.wants: list[bytes] = []
        #: ``want`` lines and the others counted with them (``deepen-not``, ``ref-prefix``).
        self.want_lines = 0
        self.haves = 0
        self.filtered = False

    # protocol v0/v1

    def v0(self, lines: Iterator[bytes | int]) -> FetchRequest:
        request = FetchRequest(None)
        first = next(lines, None)
        if first is None or first == FLUSH:
            self._end(lines)
            return request
        request.command = "fetch"
        line = first
        while line != FLUSH:
            if isinstance(line, int) or line is None:
                raise FetchRefused("upload-pack: malformed request (expected want)")
            self._v0_want_section_line(_text(line))
            line = next(lines, None)
        if not self.wants:
            raise FetchRefused("upload-pack: malformed request (no want)")
        for line in lines:
            if line == FLUSH:
                continue
            if isinstance(line, int):
                raise FetchRefused("upload-pack: malformed request (unexpected delimiter)")
            text = _text(line)
            if text == b"done":
                self._end(lines)
                break
            command, _, arg = text.partition(b" ")
            if command != b"have":
                raise FetchRefused(f"upload-pack: unexpected line {_show(command)}")
            self._have(arg)
        request.wants = self.wants
        return request

    def _v0_want_section_line(self, text: bytes) -> None:
        command, _, arg = text.partition(b" ")
        if command == b"want":
            sha, _, caps = arg.partition(b" ")
            for cap in caps.split():
                name, equals, _ = cap.partition(b"=")
                # A bare ``filter`` is harmless: git 2.39 sends it even to a server that
                # did not advertise it; the ``filter <spec>`` line is what filters.
                known = name in _VALUED_CAPABILITIES if equals else cap in V0_CAPABILITIES
                if not known:
                    raise FetchRefused(f"upload-pack: unknown capability {_show(cap)}")
            self._want(sha)
        else:
            self._section_argument(command, arg)

    # protocol v2

    def v2(self, lines: Iterator[bytes | int]) -> FetchRequest:
        first = next(lines, None)
        if first is None or first == FLUSH:
            self._end(lines)
            return FetchRequest(None)
        if isinstance(first, int) or not first.startswith(b"command="):
            raise FetchRefused("upload-pack: malformed request (expected a command)")
        command = _text(first)[len(b"command=") :]
        if command not in (b"fetch", b"ls-refs"):
            raise FetchRefused(f"upload-pack: unknown command {_show(command)}")
        line = next(lines, None)
        while isinstance(line, bytes):
            key, equals, _ = _text(line).partition(b"=")
            if not equals or key not in _V2_CAPABILITIES:
                raise FetchRefused(f"upload-pack: unknown capability {_show(key)}")
            line = next(lines, None)
        request = FetchRequest(command.decode())
        if line == DELIM:
            argument = self._v2_fetch_argument if command == b"fetch" else self._v2_ls_refs_argument
            line = next(lines, None)
            while isinstance(line, bytes):
                argument(_text(line))
                line = next(lines, None)
        if line != FLUSH:
            raise FetchRefused("upload-pack: malformed request (expected a flush)")
        self._end(lines)
        request.wants = self.wants
        return request

    def _v2_fetch_argument(self, text: bytes) -> None:
        if text in _V2_FETCH_FLAGS:
            return
        command, _, arg = text.partition(b" ")
        if command == b"want":
            self._want(arg)
        elif command == b"have":
            self._have(arg)
        else:
            self._section_argument(command, arg)

    def _v2_ls_refs_argument(self, text: bytes) -> None:
        if text in _V2_LS_REFS_FLAGS:
            return
        command, _, arg = text.partition(b" ")
        if command != b"ref-prefix" or not _REFNAME.fullmatch(arg):
            raise FetchRefused(f"upload-pack: unexpected ls-refs argument {_show(command)}")
        self._count_want()

    # shared

    def _section_argument(self, command: bytes, arg: bytes) -> None:
        """``shallow``, ``deepen*`` and ``filter``: the same in both protocol versions."""
        if command == b"shallow":
            self._have(arg, what="shallow")
        elif command == b"deepen":
            if not (arg.isdigit() and 0 < int(arg) <= MAX_DEPTH):
                raise FetchRefused(f"upload-pack: invalid deepen value {_show(arg)}")
        elif command == b"deepen-since":
            if not (arg.isdigit() and len(arg) <= 18):
                raise FetchRefused(f"upload-pack: invalid deepen-since value {_show(arg)}")
        elif command == b"deepen-not":
            if not _REFNAME.fullmatch(arg):
                raise FetchRefused("upload-pack: invalid deepen-not value")
            self._count_want()
        elif command == b"filter":
            if not self.allow_filter:
                raise FetchRefused("upload-pack: filtering is not supported by this server")
            if self.filtered or not _FILTERS.fullmatch(arg):
                raise FetchRefused(
                    f"upload-pack: filter {_show(arg)} not allowed "
                    "(use blob:none, blob:limit=<n> or tree:<depth>)"
                )
            self.filtered = True
        else:
            raise FetchRefused(f"upload-pack: unexpected line {_show(command)}")

    def _want(self, sha: bytes) -> None:
        if not _SHA.fullmatch(sha):
            raise FetchRefused("upload-pack: invalid want line")
        self._count_want()
        self.wants.append(sha)

    def _count_want(self) -> None:
        self.want_lines += 1
        if self.want_lines > self.limits.max_want_lines:
            raise FetchRefused(f"upload-pack: too many wants (limit {self.limits.max_want_lines})")

    def _have(self, sha: bytes, what: str = "have") -> None:
        if not _SHA.fullmatch(sha):
            raise FetchRefused(f"upload-pack: invalid {what} line")
        self.haves += 1
        if self.haves > self.limits.max_have_lines:
            raise FetchRefused(f"upload-pack: too many haves (limit {self.limits.max_have_lines})")

    @staticmethod
    def _end(lines: Iterator[bytes | int]) -> None:
        """Nothing may follow the end of a request: it would be read by nobody we checked."""
        if next(lines, None) is not None:
            raise FetchRefused("upload-pack: malformed request (data after the end)")


def _text(line: bytes) -> bytes:
    """A pkt-line's payload without its newline; ASCII only, as every fetch line is."""
    if not line.isascii():
        raise FetchRefused("upload-pack: malformed request (non-ASCII line)")
    return line[:-1] if line.endswith(b"\n") else line


def _show(value: bytes) -> str:
    return repr(value[:40].decode("ascii", "replace"))
