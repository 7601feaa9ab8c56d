"""Git LFS file locks: which user holds which path of a repository.

A lock is repository-wide: one per path, whatever branch it was taken from (the "single
branch locking" of the Git LFS locking API). The ref a client names is validated and
recorded, never used to split locks, so a path locked from one branch is locked for
every push. Nothing here knows HTTP; ``hfgit.server.lfs`` speaks the API on top of it.
"""

from __future__ import annotations

import time
import unicodedata
from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa

from ..store import Store, accounts, lfs_locks

#: In UTF-8 bytes: deep enough for any real work tree, and small enough that the unique
#: index on (repository, path) stays under PostgreSQL's B-tree row limit (~2.7 kB).
MAX_PATH_BYTES = 1024
MAX_REF_BYTES = 1024
#: Ids and cursors are positive integers that fit a 64-bit column.
MAX_ID_DIGITS = 18
DEFAULT_LIMIT = 100
MAX_LIMIT = 1000


class InvalidLockRequest(ValueError):
    """A path, ref, id, cursor or limit the server will not accept; the text says why."""


class LockExists(Exception):
    """The path is locked already; ``lock`` is the lock that holds it."""

    def __init__(self, lock: Lock) -> None:
        super().__init__(f"{lock.path} is already locked by {lock.owner}.")
        self.lock = lock


@dataclass(frozen=True)
class Lock:
    id: int
    path: str
    ref: str | None
    owner_id: int
    owner: str
    created_at: float

    @property
    def locked_at(self) -> str:
        """RFC 3339, as git-lfs parses it."""
        moment = datetime.fromtimestamp(self.created_at, UTC)
        return moment.isoformat(timespec="seconds")


def _has_control(text: str) -> bool:
    return any(unicodedata.category(char) == "Cc" for char in text)


def _utf8_size(text: str, what: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise InvalidLockRequest(f"The {what} is not valid Unicode.") from None


def check_path(path: object) -> str:
    """``path`` if it names a file the way git-lfs does: relative, ``/``-separated, canonical.

    Canonical so that one file has one lock: ``a/./b``, ``a//b`` or ``/a/b`` would
    otherwise lock ``a/b`` a second time.
    """
    if not isinstance(path, str) or not path:
        raise InvalidLockRequest('A lock needs "path": the file\'s path in the repository.')
    if _utf8_size(path, "path") > MAX_PATH_BYTES:
        raise InvalidLockRequest(f"The path is too long: the limit is {MAX_PATH_BYTES} bytes.")
    if _has_control(path):
        raise InvalidLockRequest("The path contains NUL or other control characters.")
    if path.startswith("/") or any(part in ("", ".", "..") for part in path.split("/")):
        raise InvalidLockRequest(
            f"The path {path!r} is not a relative path of a file in the repository "
            "(no leading or trailing '/', no empty, '.' or '..' parts)."
        )
    return path


def check_ref(ref: object) -> str | None:
    """The ref name of an optional ``{"name": "refs/heads/…"}`` object."""
    if ref is None:
        return None
    name = ref.get("name") if isinstance(ref, dict) else None
    if not isinstance(name, str) or not name:
        raise InvalidLockRequest('"ref" must be an object {"name": "refs/heads/<branch>"}.')
    return check_ref_name(name)


def check_ref_name(name: str) -> str:
    if _utf8_size(name, "ref name") > MAX_REF_BYTES:
        raise InvalidLockRequest(f"The ref name is too long: the limit is {MAX_REF_BYTES} bytes.")
    if _has_control(name):
        raise InvalidLockRequest("The ref name contains NUL or other control characters.")
    return name


def check_id(value: object, what: str = "lock id") -> int:
    """A lock id or cursor as sent (a string of digits, or a JSON integer)."""
    text = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if not isinstance(text, str) or not text.isdigit() or not text.isascii():
        raise InvalidLockRequest(f"Invalid {what}: expected a positive whole number.")
    if len(text) > MAX_ID_DIGITS or int(text) < 1:
        raise InvalidLockRequest(f"Invalid {what}: expected a positive whole number.")
    return int(text)


def check_limit(value: object) -> int:
    """Locks per page: 1 or more; asking for more than the server's maximum gets the maximum."""
    if value is None:
        return DEFAULT_LIMIT
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 9:
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise InvalidLockRequest("Invalid limit: expected a whole number of locks, at least 1.")
    return min(value, MAX_LIMIT)


_COLUMNS = (
    lfs_locks.c.id,
    lfs_locks.c.path,
    lfs_locks.c.ref,
    lfs_locks.c.owner_id,
    accounts.c.name.label("owner"),
    lfs_locks.c.created_at,
)


def _select() -> sa.Select:
    return sa.select(*_COLUMNS).join(accounts, accounts.c.id == lfs_locks.c.owner_id)


def _lock(row: sa.Row) -> Lock:
    return Lock(row.id, row.path, row.ref, row.owner_id, row.owner, row.created_at)


class LfsLocks:
    def __init__(self, store: Store) -> None:
        self.store = store

    def create(self, repo_id: int, path: str, ref: str | None, owner_id: int) -> Lock:
        """Lock ``path`` for ``owner_id``; raises :class:`LockExists` when it is locked.

        The unique (repository, path) index decides between concurrent creators: exactly
        one insert succeeds, the others find the winner's lock.
        """
        for _ in range(3):
            try:
                with self.store.begin() as conn:
                    new_id = conn.execute(
                        lfs_locks.insert().values(
                            repo_id=repo_id,
                            path=path,
                            ref=ref,
                            owner_id=owner_id,
                            created_at=time.time(),
                        )
                    ).inserted_primary_key[0]
                    return _lock(conn.execute(_select().where(lfs_locks.c.id == new_id)).one())
            except sa.exc.IntegrityError:
                existing = self.find(repo_id, path=path)
                if existing:
                    raise LockExists(existing[0]) from None
                # Unlocked between our insert and our look: try again.
        raise RuntimeError(f"Could not lock {path!r}: it was locked and unlocked repeatedly.")

    def find(
        self,
        repo_id: int,
        *,
        path: str | None = None,
        lock_id: int | None = None,
        cursor: int | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> list[Lock]:
        """Up to ``limit`` locks in id order, from id ``cursor`` on, matching the filters."""
        query = _select().where(lfs_locks.c.repo_id == repo_id)
        if path is not None:
            query = query.where(lfs_locks.c.path == path)
        if lock_id is not None:
            query = query.where(lfs_locks.c.id == lock_id)
        if cursor is not None:
            query = query.where(lfs_locks.c.id >= cursor)
        with self.store.begin() as conn:
            rows = conn.execute(query.order_by(lfs_locks.c.id).limit(limit))
            return [_lock(row) for row in rows]

    def page(
        self,
        repo_id: int,
        *,
        path: str | None = None,
        lock_id: int | None = None,
        cursor: int | None = None,
        limit: int = DEFAULT_LIMIT,
    ) -> tuple[list[Lock], int | None]:
        """One page of :meth:`find` and the cursor of the next page, if there is one."""
        locks = self.find(repo_id, path=path, lock_id=lock_id, cursor=cursor, limit=limit + 1)
        if len(locks) > limit:
            return locks[:limit], locks[limit].id
        return locks, None

    def delete(self, repo_id: int, lock_id: int, *, owner_id: int | None = None) -> Lock | None:
        """Remove the lock (only if ``owner_id`` holds it, when given); the removed lock."""
        with self.store.begin() as conn:
            row = conn.execute(
                _select().where(lfs_locks.c.repo_id == repo_id, lfs_locks.c.id == lock_id)
            ).first()
            if row is None or (owner_id is not None and row.owner_id != owner_id):
                return None
            deleted = conn.execute(
                lfs_locks.delete().where(lfs_locks.c.id == lock_id, lfs_locks.c.repo_id == repo_id)
            ).rowcount
        return _lock(row) if deleted else None
