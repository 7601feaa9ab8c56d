"""Reclaim LFS storage that no repository references any more.

Deleting a repository removes its rows from ``lfs_objects`` at once; the bytes stay until
this runs (``hfgit lfs gc``). Only objects older than a grace period are removed, so an
upload whose bytes are stored but whose row is not yet written is never touched.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from ..store import Store, lfs_objects, repos
from .storage import LocalStorage, S3Storage, Storage

_OID = re.compile(r"[0-9a-f]{64}")
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
    """Remove stored objects no repository holds, unless younger than ``grace_seconds``."""
    cutoff = time.time() - grace_seconds
    if isinstance(storage, S3Storage):
        return _collect_s3(storage, store, cutoff, dry_run)
    return _collect_local(storage, store, cutoff, dry_run)


def _batches(items: Iterable, size: int = _BATCH) -> Iterator[list]:
    batch: list = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _referenced(store: Store, oids: list[str]) -> set[str]:
    with store.begin() as conn:
        rows = conn.execute(
            sa.select(lfs_objects.c.oid).distinct().where(lfs_objects.c.oid.in_(oids))
        )
        return {row.oid for row in rows}


def _local_objects(storage: LocalStorage) -> Iterator[Path]:
    for root, _dirs, files in os.walk(storage.root / "objects"):
        for name in files:
            if _OID.fullmatch(name):
                yield Path(root) / name


def _collect_local(storage: LocalStorage, store: Store, cutoff: float, dry_run: bool) -> GcReport:
    report = GcReport()
    for paths in _batches(_local_objects(storage)):
        report.examined += len(paths)
        referenced = _referenced(store, [path.name for path in paths])
        for path in paths:
            if path.name in referenced:
                continue
            try:
                info = path.stat()
            except FileNotFoundError:
                continue
            if info.st_mtime > cutoff:
                report.kept_recent += 1
            elif dry_run or _remove_unless_replaced(path, cutoff):
                report.count(info.st_size)
    # Temporary files of uploads that crashed before they could clean up.
    if storage.tmp.is_dir():
        for leftover in storage.tmp.iterdir():
            try:
                stale = leftover.stat().st_mtime <= cutoff
            except FileNotFoundError:
                continue  # that upload just finished
            if stale and not dry_run:
                leftover.unlink(missing_ok=True)
    return report


def _remove_unless_replaced(path: Path, cutoff: float) -> bool:
    """Delete ``path`` unless an upload put a fresh copy there since we looked.

    An upload replaces the file (``os.replace``) before it writes the object's row, so a
    copy newer than the grace period is one to keep: moved aside first, then checked.
    """
    aside = path.with_name(path.name + ".gc")
    try:
        os.rename(path, aside)
    except FileNotFoundError:
        return False
    if aside.stat().st_mtime > cutoff:
        with suppress(FileExistsError):  # an even newer upload is already in place
            os.link(aside, path)
        aside.unlink()
        return False
    aside.unlink()
    return True


def _collect_s3(storage: S3Storage, store: Store, cutoff: float, dry_run: bool) -> GcReport:
    report = GcReport()
    with store.begin() as conn:
        repo_ids = dict(conn.execute(sa.select(repos.c.storage_id, repos.c.id)).all())
    paginator = storage.client.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=storage.bucket):
        entries = []
        for item in page.get("Contents", []):
            storage_id, _, rest = item["Key"].partition("/")
            oid = rest.rsplit("/", 1)[-1]
            if _OID.fullmatch(oid):
                entries.append((item, repo_ids.get(storage_id), oid))
        report.examined += len(entries)
        held = _held_by_repo(store, [(repo_id, oid) for _, repo_id, oid in entries if repo_id])
        for item, repo_id, oid in entries:
            if (repo_id, oid) in held:
                continue
            if item["LastModified"].timestamp() > cutoff:
                report.kept_recent += 1
                continue
            if not dry_run:
                storage.client.delete_object(Bucket=storage.bucket, Key=item["Key"])
            report.count(item["Size"])
    return report


def _held_by_repo(store: Store, pairs: list[tuple[int, str]]) -> set[tuple[int, str]]:
    found: set[tuple[int, str]] = set()
    for batch in _batches(pairs):
        with store.begin() as conn:
            rows = conn.execute(
                sa.select(lfs_objects.c.repo_id, lfs_objects.c.oid).where(
                    lfs_objects.c.oid.in_([oid for _, oid in batch])
                )
            )
            found.update((row.repo_id, row.oid) for row in rows)
    return found
