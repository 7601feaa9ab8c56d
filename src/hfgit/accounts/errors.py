"""What the accounts operations raise."""

from __future__ import annotations


class AccountsError(Exception):
    """A request the caller can correct; the message says how."""


class NotFound(AccountsError):
    pass


class Conflict(AccountsError):
    pass


class InvalidInput(AccountsError):
    pass


class StorageUnavailable(Exception):
    """A repository's storage is missing or is not what it must be (a plain directory
    inside the repositories directory); it is not served. Not the caller's to correct."""


class AuthError(Exception):
    """Credentials that do not identify anyone; ``kind`` picks the message to show."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind  # "password" | "org_token" | "invalid" | "disabled"
