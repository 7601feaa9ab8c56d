"""Failed logins on the settings pages, kept in the database for rate limiting."""

from __future__ import annotations

from collections.abc import Iterable

import sqlalchemy as sa

from ..store import Store, login_failures


class LoginFailures:
    def __init__(self, store: Store) -> None:
        self.store = store

    def record_failure(self, keys: Iterable[str], *, at: float, forget_before: float) -> None:
        """Note one failed login under each key, dropping entries older than ``forget_before``."""
        with self.store.begin() as conn:
            conn.execute(login_failures.delete().where(login_failures.c.at < forget_before))
            conn.execute(login_failures.insert(), [{"key": key, "at": at} for key in keys])

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
