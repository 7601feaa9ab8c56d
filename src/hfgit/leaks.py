"""Finding this server's access tokens in content pushed to it, without a second pass.

A token committed to a repository is a leaked credential: anyone who can read the
repository can use it. The scan is split so that a push costs one pass over its blobs
and one database query: :class:`TokenScanner` reads a stream once and keeps the strings
of the token shape whose checksum holds (no database; a look-alike or a typo costs
nothing), then the caller asks the database about all of them at once
(``Lookups.live_tokens``). Only tokens that are live now are refused: a deleted or
refreshed token's old value is harmless, and so is a made-up one.

Nothing here logs, and no message built here contains a token.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .tokens import TOKEN_LENGTH, is_well_formed

#: The shape public secret scanners look for; the checksum is checked on each match.
TOKEN_PATTERN = re.compile(rb"hf_[A-Za-z]{34}")
_OVERLAP = TOKEN_LENGTH - 1


class TokenScanner:
    """Candidates in a stream fed chunk by chunk, tokens split across chunks included.

    Each chunk is searched on its own; the last ``TOKEN_LENGTH - 1`` bytes seen before
    it and its first as many are searched together, which finds every token that
    starts before the chunk and ends in it, however small the chunks are.
    """

    def __init__(self) -> None:
        self.found: set[str] = set()
        self._tail = b""

    def feed(self, chunk: bytes) -> None:
        if not chunk:
            return
        if self._tail:
            self._search(self._tail + chunk[:_OVERLAP])
        self._search(chunk)
        self._tail = (self._tail + chunk[-_OVERLAP:])[-_OVERLAP:]

    def _search(self, data: bytes) -> None:
        if b"hf_" not in data:  # the common case, at memchr speed
            return
        for match in set(TOKEN_PATTERN.findall(data)):  # a string repeated is checked once
            candidate = match.decode("ascii")
            if is_well_formed(candidate):
                self.found.add(candidate)


def candidate_tokens(chunks: Iterable[bytes]) -> set[str]:
    """Strings of the token shape with a valid checksum in ``chunks``, read as one stream."""
    scanner = TokenScanner()
    for chunk in chunks:
        scanner.feed(chunk)
    return scanner.found


@dataclass(frozen=True)
class LiveToken:
    """A current token found in content: who owns it and its name, never its value."""

    token_id: int
    owner: str
    name: str


@dataclass(frozen=True)
class Leak:
    """Where a push holds a live token: the commit that brings the file, and its path."""

    commit: str
    path: str
    token: LiveToken


def refusal_text(leaks: list[Leak], *, limit: int = 20) -> str:
    """What the pusher reads: each commit and file, and what the token's owner must do."""
    lines = [
        "Your push was rejected because it contains a live access token of this server.",
        "Anyone who can read the repository could use it. Its owner must refresh it now",
        "(settings page, or: hfgit token refresh <user> <name>), then remove it from the",
        "history (git rebase -i, or git filter-repo) and push again.",
    ]
    for leak in leaks[:limit]:
        lines.append(
            f"  - commit {leak.commit}, file {leak.path}: "
            f"token {leak.token.name!r} of {leak.token.owner}"
        )
    if len(leaks) > limit:
        lines.append(f"  … and {len(leaks) - limit} more")
    return "\n".join(lines)
