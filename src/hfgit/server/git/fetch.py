"""upload-pack that serves only what the refs show, within bounds.

dulwich's upload-pack already refuses wants that are not current ref tips; this adds a
clear in-protocol answer for them (``ERR upload-pack: not our ref …``, as git says),
bounds the number of ``want``/``have``/``shallow`` lines and checks ``deepen`` values
before dulwich turns them into a walk.
"""

from __future__ import annotations

from dataclasses import dataclass

from dulwich.errors import GitProtocolError
from dulwich.objects import valid_hexsha
from dulwich.server import UploadPackHandler

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


class HardenedUploadPackHandler(UploadPackHandler):
    """Checks each request line as it is read, before dulwich acts on it."""

    def __init__(self, *args, limits: FetchLimits, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.limits = limits
        self._wants = 0
        self._haves = 0
        self._tips: set[bytes] | None = None
        read = self.proto.read_pkt_line

        def read_checked() -> bytes | None:
            line = read()
            if line:
                self._check_line(line)
            return line

        self.proto.read_pkt_line = read_checked  # type: ignore[method-assign]

    def _advertised(self) -> set[bytes]:
        if self._tips is None:
            self._tips = set(self.repo.get_refs().values())
        return self._tips

    def _check_line(self, line: bytes) -> None:
        command, _, rest = line.rstrip(b"\n").partition(b" ")
        if command == b"want":
            self._wants += 1
            if self._wants > self.limits.max_want_lines:
                raise FetchRefused(
                    f"upload-pack: too many wants (limit {self.limits.max_want_lines})"
                )
            sha = rest.split(b" ", 1)[0].split(b"\0", 1)[0]
            if not valid_hexsha(sha):
                raise FetchRefused("upload-pack: invalid want line")
            if sha not in self._advertised():
                raise FetchRefused(f"upload-pack: not our ref {sha.decode('ascii')}")
        elif command in (b"have", b"shallow"):
            self._haves += 1
            if self._haves > self.limits.max_have_lines:
                raise FetchRefused(
                    f"upload-pack: too many haves (limit {self.limits.max_have_lines})"
                )
        elif command == b"deepen" and not (rest.isdigit() and 0 < int(rest) <= MAX_DEPTH):
            raise FetchRefused(f"upload-pack: invalid deepen value {rest[:32]!r}")
