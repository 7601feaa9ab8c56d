"""Signed transfer URLs: a capability for one operation on one object of one repository.

The batch endpoint checks the caller's token and policy, then hands out URLs that need
no further credentials. The signature binds everything the URL grants, so a URL cannot
be replayed for another object, size, repository or operation, or after expiry. It also
binds the token that asked for it (by its current digest), so deleting or refreshing
that token kills its outstanding URLs too.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from dataclasses import dataclass

OPERATIONS = ("upload", "download", "verify")


class InvalidSignature(Exception):
    """A transfer URL that was tampered with, made for something else, or has expired."""


@dataclass(frozen=True)
class Grant:
    operation: str
    #: The repository's internal ``hub_id``: a repo deleted and recreated under the same
    #: name does not inherit URLs signed for the old one.
    repo: str
    oid: str
    size: int
    expires: int
    #: The digest of the token the URL was issued to; empty for an anonymous download.
    credential: str = ""

    def message(self) -> bytes:
        fields = (self.operation, self.repo, self.oid, self.size, self.expires, self.credential)
        return "\n".join(str(field) for field in fields).encode()


class Signer:
    def __init__(self, secret: bytes) -> None:
        # A key of its own, so a signature made here means nothing anywhere else the
        # server secret is used.
        self._key = hmac.new(secret, b"hfgit lfs transfer v2", hashlib.sha256).digest()

    def sign(self, grant: Grant) -> str:
        if grant.operation not in OPERATIONS:
            raise ValueError(f"Unknown LFS operation {grant.operation!r}.")
        return hmac.new(self._key, grant.message(), hashlib.sha256).hexdigest()

    def check(self, grant: Grant, signature: str, now: float | None = None) -> None:
        """Raise :class:`InvalidSignature` unless ``signature`` is valid and current."""
        expected = self.sign(grant)
        if not hmac.compare_digest(expected, signature):
            raise InvalidSignature("This transfer URL is not valid: request a new one.")
        if (time.time() if now is None else now) >= grant.expires:
            raise InvalidSignature("This transfer URL has expired: request a new one.")
