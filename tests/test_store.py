"""The store: schema creation (migrations to head) by several gatekeepers starting at once."""

from __future__ import annotations

import threading
from pathlib import Path

import sqlalchemy as sa

from hfgit.store import Store, server_settings


def create_concurrently(url: str, count: int = 6) -> list[str]:
    errors: list[str] = []
    barrier = threading.Barrier(count)
    stores = [Store(url) for _ in range(count)]

    def create(store: Store) -> None:
        barrier.wait()
        try:
            store.upgrade()
        except Exception as error:
            errors.append(type(error).__name__)

    threads = [threading.Thread(target=create, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    for store in stores:
        store.dispose()
    return errors


def assert_one_secret(url: str) -> None:
    store = Store(url)
    with store.begin() as conn:
        rows = conn.execute(sa.select(server_settings)).all()
    store.dispose()
    assert [row.key for row in rows] == ["secret"]


def test_concurrent_schema_creation_on_postgres(fresh_postgres_url: str):
    assert create_concurrently(fresh_postgres_url) == []
    assert_one_secret(fresh_postgres_url)


def test_concurrent_schema_creation_on_sqlite(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'hfgit.db'}"
    assert create_concurrently(url) == []
    assert_one_secret(url)
