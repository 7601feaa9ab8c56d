"""Which LFS objects each repository holds.

Knowing an oid is not owning it: an object becomes part of a repository only when its
bytes were uploaded for that repository (GitLab's and Gitea's LFS "object linking"
vulnerabilities came from skipping this), however storage deduplicates underneath.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import sqlalchemy as sa

from ..store import Store, lfs_objects


class LfsObjects:
    def __init__(self, store: Store) -> None:
        self.store = store

    def sizes(self, repo_id: int, oids: Iterable[str]) -> dict[str, int]:
        """The size of each of ``oids`` that repository ``repo_id`` holds."""
        wanted = sorted(set(oids))
        if not wanted:
            return {}
        found: dict[str, int] = {}
        with self.store.begin() as conn:
            # Chunks keep the IN list under every backend's parameter limit.
            for start in range(0, len(wanted), 500):
                rows = conn.execute(
                    sa.select(lfs_objects.c.oid, lfs_objects.c.size).where(
                        lfs_objects.c.repo_id == repo_id,
                        lfs_objects.c.oid.in_(wanted[start : start + 500]),
                    )
                )
                found.update({row.oid: row.size for row in rows})
        return found

    def add(self, repo_id: int, oid: str, size: int) -> None:
        """Record that ``repo_id`` holds ``oid``; recording it twice is harmless."""
        try:
            with self.store.begin() as conn:
                conn.execute(
                    lfs_objects.insert().values(
                        repo_id=repo_id, oid=oid, size=size, created_at=time.time()
                    )
                )
        except sa.exc.IntegrityError:
            # A concurrent upload of the same object for the same repo got there first.
            if oid not in self.sizes(repo_id, [oid]):
                raise
