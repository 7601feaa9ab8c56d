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
from collections.abc import Callable, Iterable

import sqlalchemy as sa

from ..store import Store, login_failures

#: The key prefixes of the settings pages' limiter; the gate's have their own.
LOGIN_KEYS = ("client:", "account:")


class LoginFailures:
    """The failed logins, by key: ``client:<addr>`` or ``account:<name>`` for the
    settings pages, ``auth-client:<addr>`` or ``auth-token:<hash>`` for the gate."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def record_failure(
        self,
        keys: Iterable[str],
        *,
        at: float,
        forget_before: float,
        sweep: tuple[str, ...] = LOGIN_KEYS,
    ) -> None:
        """Note one failure under each key, dropping entries older than ``forget_before``
        among the keys that start with one of ``sweep`` (each limiter has its own window)."""
        with self.store.begin() as conn:
            _record(conn, keys, at=at, forget_before=forget_before, sweep=sweep)

    def record_unless_over(
        self, limits: dict[str, int], *, at: float, window: float, sweep: tuple[str, ...]
    ) -> int | None:
        """One transaction: the seconds to wait when a key already has its limit of
        failures within ``window``; otherwise note one more under every key, and None."""
        since = at - window
        with self.store.begin() as conn:
            rows = conn.execute(
                sa.select(login_failures.c.key, sa.func.count(), sa.func.min(login_failures.c.at))
                .where(login_failures.c.key.in_(list(limits)), login_failures.c.at > since)
                .group_by(login_failures.c.key)
            ).all()
            waits = [
                max(1, math.ceil(oldest + window - at))
                for key, count, oldest in rows
                if count >= limits[key]
            ]
            if waits:
                return max(waits)
            _record(conn, limits, at=at, forget_before=since, sweep=sweep)
        return None

    def count_failures(self, key: str, *, since: float) -> tuple[int, float | None]:
        """How many failures ``key`` has had after ``since``, and when the oldest of them was."""
        with self.store.begin() as conn:
            row = conn.execute(
                sa.select(sa.func.count(), sa.func.min(login_failures.c.at)).where(
                    login_failures.c.key == key, login_failures.c.at > since
                )
            ).one()
        return int(row[0]), row[1]

    def clear_failures(self, keys: Iterable[str]) -> None:
        with self.store.begin() as conn:
            conn.execute(login_failures.delete().where(login_failures.c.key.in_(list(keys))))


def _record(
    conn: sa.Connection,
    keys: Iterable[str],
    *,
    at: float,
    forget_before: float,
    sweep: tuple[str, ...],
) -> None:
    old = sa.or_(*(login_failures.c.key.startswith(prefix) for prefix in sweep))
    conn.execute(login_failures.delete().where(old, login_failures.c.at < forget_before))
    conn.execute(login_failures.insert(), [{"key": key, "at": at} for key in keys])


class LoginLimiter:
    def __init__(
        self,
        failures: LoginFailures,
        *,
        per_client: int,
        per_account: int,
        window: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.failures = failures
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
            count, oldest = self.failures.count_failures(key, since=now - self.window)
            if count >= limit and oldest is not None:
                waits.append(max(1, math.ceil(oldest + self.window - now)))
        return max(waits) if waits else None

    def failed(self, client: str, account: str) -> None:
        now = self.clock()
        self.failures.record_failure(
            [self._client_key(client), self._account_key(account)],
            at=now,
            forget_before=now - self.window,
        )

    def succeeded(self, client: str, account: str) -> None:
        self.failures.clear_failures([self._client_key(client), self._account_key(account)])
