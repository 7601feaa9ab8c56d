"""Reclaim LFS storage that no repository references any more.

Deleting a repository removes its rows from ``lfs_objects`` at once; the bytes stay until
this runs (``hfgit lfs gc``). Only objects older than a grace period are removed, so an
upload whose bytes are stored but whose row is not yet written is never touched.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import sqlalchemy as sa

from ..store import Store, lfs_objects, repos
from .storage import Storage, StoredObject

_BATCH = 500


@dataclass
class GcReport:
    examined: int = 0
    removed: int = 0
    freed_bytes: int = 0
    kept_recent: int = 0

    def count(self, size: int) -> None:
        self.removed += 1
        self.freed_bytes += size


def collect(
    storage: Storage, store: Store, *, grace_seconds: float, dry_run: bool = False
) -> GcReport:
    """Remove stored objects no repository holds, unless younger than ``grace_seconds``.

    A copy kept for one repository (``storage_id`` set) is held only by that repository's
    row; a copy shared by all (local storage) by any repository's.
    """
    cutoff = time.time() - grace_seconds
    with store.begin() as conn:
        repo_ids = dict(conn.execute(sa.select(repos.c.storage_id, repos.c.id)).all())
    report = GcReport()
    for items in _batches(storage.stored()):
        report.examined += len(items)
        held = _held(store, [item.oid for item in items])
        for item in items:
            holders = held.get(item.oid, set())
            if item.storage_id is None and holders:
                continue
            if item.storage_id is not None and repo_ids.get(item.storage_id) in holders:
                continue
            if item.modified > cutoff:
                report.kept_recent += 1
            elif dry_run or storage.remove(item, cutoff):
                report.count(item.size)
    if not dry_run:
        storage.remove_leftovers(cutoff)
    return report


def _batches(items: Iterable[StoredObject], size: int = _BATCH) -> Iterator[list[StoredObject]]:
    batch: list[StoredObject] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _held(store: Store, oids: list[str]) -> dict[str, set[int]]:
    """The repositories that hold each of ``oids``."""
    found: dict[str, set[int]] = {}
    with store.begin() as conn:
        rows = conn.execute(
            sa.select(lfs_objects.c.repo_id, lfs_objects.c.oid).where(
                lfs_objects.c.oid.in_(sorted(set(oids)))
            )
        )
        for row in rows:
            found.setdefault(row.oid, set()).add(row.repo_id)
    return found
