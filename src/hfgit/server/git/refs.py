"""Ref updates under the repository lock, compared and swapped, all or nothing if atomic.

The lock is ``flock`` on the repository directory, shared by every worker process and
thread. Under it each ref is compared with the old value the client saw, the checked
pack is moved in, and the refs are swapped; ``atomic`` pushes update all refs or none.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress

from dulwich.file import FileLocked
from dulwich.repo import Repo

log = logging.getLogger(__name__)

#: How long a push waits for another push to the same repository to finish.
LOCK_WAIT_SECONDS = 30.0

#: One ref update as git sends it: old id, new id, ref name.
Command = tuple[bytes, bytes, bytes]


class RepoBusy(Exception):
    """Another push holds the repository; the client may retry."""


@contextmanager
def repo_lock(path: str, wait: float = LOCK_WAIT_SECONDS) -> Iterator[None]:
    """Exclusive lock on the repository directory, across processes and threads.

    ``flock`` on a directory needs no lock file, so a crash leaves nothing behind and
    the repository's bytes stay as they were.
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        deadline = time.monotonic() + wait
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RepoBusy() from None
                time.sleep(0.02)
        yield
    finally:
        os.close(fd)


@contextmanager
def try_lock_directory(path: str | os.PathLike) -> Iterator[bool]:
    """``flock`` on a directory without waiting: yields whether this caller got it.

    For work that is skipped, not queued, when someone else is at it (maintenance of a
    repository, the sweep of a quarantine a live push still holds).
    """
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)


def clear_stale_lock(lock_path: str, max_age: float) -> bool:
    """Remove a ``*.lock`` a crashed writer left; ``False`` if it may still be live.

    Called only while holding :func:`repo_lock`, so no hfgit writer owns the file; a
    young lock or one owned by another user may belong to a git process run by hand.
    """
    try:
        info = os.stat(lock_path)
    except FileNotFoundError:
        return True
    if info.st_uid != os.getuid() or time.time() - info.st_mtime < max_age:
        return False
    with suppress(FileNotFoundError):
        os.remove(lock_path)
    log.warning("removed stale lock %s (%.0f s old)", lock_path, time.time() - info.st_mtime)
    return True


def update_refs(
    repo: Repo,
    commands: Sequence[Command],
    errors: dict[bytes, bytes],
    *,
    zero: bytes,
    atomic: bool,
    stale_lock_seconds: float,
    before_swap: Callable[[], None],
) -> Iterator[tuple[bytes, bytes]]:
    """Apply ``commands`` not already refused in ``errors``; yield ``(ref, status)`` each.

    ``before_swap`` runs under the lock once some ref will move to a new object: it
    moves the checked pack in, so no ref ever points at objects not yet in place.
    """
    try:
        with repo_lock(repo.path):
            yield from _update_locked(
                repo, commands, errors, zero, atomic, stale_lock_seconds, before_swap
            )
    except RepoBusy:
        for _, _, ref in commands:
            yield (ref, errors.get(ref, b"another push is in progress; try again"))


def _update_locked(repo, commands, errors, zero, atomic, stale_lock_seconds, before_swap):
    refs = repo.refs
    for old, _new, ref in commands:
        if ref in errors:
            continue
        if not _clear_locks(repo, ref, stale_lock_seconds):
            errors[ref] = b"ref is locked by another writer; try again"
        elif _current(refs, ref, zero) != old:
            errors[ref] = b"fetch first" if old != zero else b"stale info"
    if atomic and errors:
        yield from atomic_failed(commands, errors)
        return
    todo = [command for command in commands if command[2] not in errors]
    if any(new != zero for _, new, _ in todo):
        before_swap()
    done: list[Command] = []
    for old, new, ref in todo:
        try:
            if new == zero:
                ok = refs.remove_if_equals(ref, old)
            else:
                ok = refs.set_if_equals(ref, old, new)
        except (FileLocked, OSError) as error:
            log.warning("ref update %s failed: %s", ref.decode("utf-8", "replace"), error)
            ok = False
            errors[ref] = b"failed to update ref; try again"
        if ok:
            done.append((old, new, ref))
        else:
            errors.setdefault(ref, b"fetch first")
            if atomic:
                _roll_back(repo, done, zero)
                yield from atomic_failed(commands, errors)
                return
    for _, _, ref in commands:
        yield (ref, errors.get(ref, b"ok"))


def atomic_failed(commands: Sequence[Command], errors: dict[bytes, bytes]):
    """Every ref of an atomic push refused: the reason where there is one, else why."""
    for _, _, ref in commands:
        yield (ref, errors.get(ref, b"atomic push failed"))


def _clear_locks(repo: Repo, ref: bytes, stale_lock_seconds: float) -> bool:
    paths = [os.fsdecode(repo.refs.refpath(ref)) + ".lock"]
    paths.append(os.path.join(repo.path, "packed-refs.lock"))
    return all(clear_stale_lock(path, stale_lock_seconds) for path in paths)


def _roll_back(repo: Repo, done: Sequence[Command], zero: bytes) -> None:
    for old, new, ref in reversed(done):
        if old == zero:
            repo.refs.remove_if_equals(ref, new)
        else:
            repo.refs.set_if_equals(ref, new, old)


def _current(refs, ref: bytes, zero: bytes) -> bytes:
    """The ref's value now, symrefs followed; ``zero`` when it does not exist."""
    try:
        return refs[ref]
    except KeyError:
        return zero
