"""Failed-login limits for the settings pages, per client address and per account.

Failures are kept in the database, so every worker (and every server behind a load
balancer) counts the same ones. The window slides: a block lifts as soon as its oldest
failure is older than the window, so nobody is locked out for good. A browser that has
logged in to an account before (it holds a signed device cookie for it) is exempt from
that account's limit, so an attacker hammering someone's name cannot keep the real owner
out; the per-client limit still applies to everyone.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

from ..accounts import Accounts


class LoginLimiter:
    def __init__(
        self,
        accounts: Accounts,
        *,
        per_client: int,
        per_account: int,
        window: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.accounts = accounts
        self.per_client = per_client
        self.per_account = per_account
        self.window = window
        self.clock = clock

    @staticmethod
    def _client_key(client: str) -> str:
        return f"client:{client}"

    @staticmethod
    def _account_key(account: str) -> str:
        return f"account:{account.strip().lower()}"

    def retry_after(self, client: str, account: str, *, known_device: bool = False) -> int | None:
        """Seconds until this client may try ``account`` again, or None when it may now."""
        now = self.clock()
        limits = [(self._client_key(client), self.per_client)]
        if not known_device:
            limits.append((self._account_key(account), self.per_account))
        waits = []
        for key, limit in limits:
            count, oldest = self.accounts.logins.count_failures(key, since=now - self.window)
            if count >= limit and oldest is not None:
                waits.append(max(1, math.ceil(oldest + self.window - now)))
        return max(waits) if waits else None

    def failed(self, client: str, account: str) -> None:
        now = self.clock()
        self.accounts.logins.record_failure(
            [self._client_key(client), self._account_key(account)],
            at=now,
            forget_before=now - self.window,
        )

    def succeeded(self, client: str, account: str) -> None:
        self.accounts.logins.clear_failures([self._client_key(client), self._account_key(account)])
