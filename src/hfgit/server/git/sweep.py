"""Crash recovery: what killed pushes, repacks, deletions and uploads leave behind.

A push killed with SIGKILL (or a worker the heartbeat restarted, or a machine that lost
power) leaves its quarantine, ``objects/incoming-*``, with a partial pack in it; a killed
repack its temporary packs; a killed ref update its ``*.lock``. None of them is ever
referenced, so removing them is safe exactly when no live writer holds them:

- a quarantine is held by its push with ``flock`` for the push's whole life (the kernel
  drops the lock when the process dies), so it goes only when a non-blocking ``flock``
  succeeds; the grace period covers the instant between its ``mkdtemp`` and its lock;
- temporary packs are written by maintenance, which holds ``flock`` on ``objects/``,
  and by dulwich's ``add_pack``/``add_thin_pack``, which keep writing to them: they go
  only when the maintenance lock is free and they are older than the grace period;
- ref locks go under the repository lock, by the rule pushes already apply
  (:func:`~.refs.clear_stale_lock`);
- a repository whose deletion was killed between its rename and its removal
  (``<id>.deleted``) goes when older than the grace period.

``hfgit serve`` sweeps every repository before its workers start, and each worker
sweeps again every ``HFGIT_SWEEP_INTERVAL`` seconds.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ...config import Settings
from ...lfs import open_storage
from .maintenance import maintenance_lock
from .packs import QUARANTINE_PREFIX
from .refs import RepoBusy, clear_stale_lock, repo_lock, try_lock_directory

log = logging.getLogger(__name__)

#: Temporary files of git's and dulwich's pack writers, in ``objects/`` and ``objects/pack/``.
TEMP_PACK_PREFIXES = ("tmp_pack_", "tmp_idx_", "tmp_rev_", ".tmp-")


@dataclass
class SweepReport:
    quarantines: int = 0
    temp_packs: int = 0
    ref_locks: int = 0
    deleted_repos: int = 0

    def add(self, other: SweepReport) -> None:
        self.quarantines += other.quarantines
        self.temp_packs += other.temp_packs
        self.ref_locks += other.ref_locks
        self.deleted_repos += other.deleted_repos

    @property
    def total(self) -> int:
        return self.quarantines + self.temp_packs + self.ref_locks + self.deleted_repos


def _older(path: str, cutoff: float) -> bool:
    try:
        return os.lstat(path).st_mtime <= cutoff
    except FileNotFoundError:
        return False


def sweep_repository(
    path: str | os.PathLike, *, grace: float, stale_lock_seconds: float
) -> SweepReport:
    """Remove the leftovers of killed writers from one bare repository."""
    report = SweepReport()
    cutoff = time.time() - grace
    objects = os.path.join(path, "objects")
    try:
        names = os.listdir(objects)
    except FileNotFoundError:
        return report
    for name in names:
        entry = os.path.join(objects, name)
        if name.startswith(QUARANTINE_PREFIX) and _older(entry, cutoff):
            try:
                with try_lock_directory(entry) as free:
                    if free:
                        shutil.rmtree(entry)
                        report.quarantines += 1
            except FileNotFoundError:
                continue  # its push just finished
            except OSError as error:  # a link or a file by that name: not ours to touch
                log.warning("left %s alone: %s", entry, error)
    with maintenance_lock(path) as free:
        if free:
            report.temp_packs = _sweep_temp_packs(objects, cutoff)
    try:
        with repo_lock(os.fspath(path), wait=0):
            report.ref_locks = _sweep_ref_locks(os.fspath(path), stale_lock_seconds)
    except RepoBusy:
        pass
    return report


def _sweep_temp_packs(objects: str, cutoff: float) -> int:
    removed = 0
    for directory in (objects, os.path.join(objects, "pack")):
        try:
            names = os.listdir(directory)
        except FileNotFoundError:
            continue
        for name in names:
            dulwich_temp = (
                directory.endswith("pack") and name.startswith("tmp") and name.endswith(".pack")
            )
            if not (name.startswith(TEMP_PACK_PREFIXES) or dulwich_temp):
                continue
            entry = os.path.join(directory, name)
            try:
                if _older(entry, cutoff) and stat.S_ISREG(os.lstat(entry).st_mode):
                    os.unlink(entry)
                    removed += 1
            except FileNotFoundError:
                continue
    return removed


def _sweep_ref_locks(path: str, stale_lock_seconds: float) -> int:
    removed = 0
    candidates = [os.path.join(path, "packed-refs.lock"), os.path.join(path, "HEAD.lock")]
    for root, _dirs, files in os.walk(os.path.join(path, "refs")):
        candidates.extend(os.path.join(root, name) for name in files if name.endswith(".lock"))
    for lock in candidates:
        if os.path.lexists(lock) and clear_stale_lock(lock, stale_lock_seconds):
            removed += 1
    return removed


def sweep_all(settings: Settings) -> SweepReport:
    """Sweep every repository under ``settings.repos_dir``, and LFS's staged uploads.

    Only plain directories are entered: a symlink in the repositories directory is
    never followed (``accounts.repos.path`` refuses to serve it too).
    """
    report = SweepReport()
    grace = settings.sweep_grace_seconds
    cutoff = time.time() - grace
    repos_dir = Path(settings.repos_dir)
    try:
        entries = list(os.scandir(repos_dir))
    except FileNotFoundError:
        entries = []
    for entry in entries:
        if not entry.is_dir(follow_symlinks=False):
            continue
        if entry.name.endswith(".git"):
            try:
                found = sweep_repository(
                    entry.path, grace=grace, stale_lock_seconds=settings.stale_lock_seconds
                )
            except OSError as error:  # one unreadable repository must not stop the rest
                log.warning("could not sweep repository storage %s: %s", entry.name, error)
                continue
            report.add(found)
            if found.total:
                log.warning(
                    "recovered repository storage %s: removed %d quarantines, %d temporary "
                    "packs, %d stale ref locks",
                    entry.name,
                    found.quarantines,
                    found.temp_packs,
                    found.ref_locks,
                )
        elif entry.name.endswith(".deleted") and _older(entry.path, cutoff):
            shutil.rmtree(entry.path, ignore_errors=True)
            report.deleted_repos += 1
    open_storage(settings).remove_leftovers(cutoff)
    return report


def recover_at_start(settings: Settings) -> SweepReport:
    """:func:`sweep_all`, plus what only a start can afford: walking every LFS object
    for the copies a killed ``hfgit lfs gc`` set aside."""
    report = sweep_all(settings)
    restored = open_storage(settings).restore_set_aside(time.time() - settings.sweep_grace_seconds)
    if restored:
        log.warning("restored %d LFS objects a killed gc had set aside", restored)
    return report


class PeriodicSweep:
    """Each worker sweeps every ``settings.sweep_interval`` seconds, at a jittered
    moment so the workers of one server (and several servers) do not all sweep at once;
    the locks make concurrent sweeps harmless anyway."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._stop = threading.Event()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self._run, name="hfgit-sweep", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        interval = self.settings.sweep_interval
        while not self._stop.wait(interval * random.uniform(0.5, 1.5)):
            try:
                sweep_all(self.settings)
            except Exception:  # a sweep must never take its worker down
                log.exception("periodic sweep failed")
