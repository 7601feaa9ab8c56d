"""The one way the server says no, whichever surface asked.

The gate, the request parsers and the handlers raise :class:`Refusal`; the application
hands it to the surface that was asked (git, LFS, the API or the pages), which renders
it once, in its own dialect. Errors of the layers below HTTP (names, accounts, LFS
objects and locks) become refusals in :func:`refusal_for`, one table for every surface.
"""

from __future__ import annotations

from ..accounts import AccountsError, Conflict, NotFound, StorageUnavailable
from ..lfs import ObjectMismatch, ObjectMissing, StorageFull
from ..lfs.locks import InvalidLockRequest
from ..names import InvalidName
from ..policy import Deny


class Refusal(Exception):
    """A request answered with an error.

    ``status`` is the HTTP status and ``message`` what the person at the client reads.
    ``code`` is the Hub's ``X-Error-Code`` where one applies (``RepoNotFound``,
    ``GatedRepo``, …). ``challenge`` asks the client for Basic credentials, as git
    needs before it sends any. ``retry_after`` (seconds) becomes a ``Retry-After``
    header on whatever the surface renders. ``reason`` names the cause for a surface that words some
    causes its own way (the API's text for a bad token, which ``huggingface_hub`` reads).
    """

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        challenge: bool = False,
        reason: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code
        self.challenge = challenge
        self.reason = reason
        self.retry_after = retry_after

    @classmethod
    def from_deny(cls, deny: Deny) -> Refusal:
        """The policy's refusal; a 401 asks for credentials."""
        return cls(deny.status, deny.message, code=deny.code, challenge=deny.status == 401)


#: Errors from below the HTTP layer, by the status they are answered with.
_STATUS_OF: tuple[tuple[type[Exception], int], ...] = (
    (NotFound, 404),
    (ObjectMissing, 404),
    (Conflict, 409),
    (InvalidLockRequest, 422),
    (ObjectMismatch, 422),
    (InvalidName, 400),
    (StorageUnavailable, 503),
    (StorageFull, 507),
    (AccountsError, 400),
)

#: What :func:`refusal_for` turns into a refusal; anything else is a bug.
DOMAIN_ERRORS = tuple(kind for kind, _ in _STATUS_OF)


def refusal_for(error: Exception) -> Refusal:
    """The answer to an error one of :data:`DOMAIN_ERRORS` raised: its message, its status."""
    for kind, status in _STATUS_OF:
        if isinstance(error, kind):
            return Refusal(status, str(error))
    raise TypeError(f"not a domain error: {error!r}")
