"""A cap on concurrent pack generations per host, shared by every worker process.

Eight clones at once would otherwise run eight multi-threaded ``pack-objects`` on a
machine with two cores, and every one of them would finish late. The cap is a pool of
lock files in the data directory: a pack generation holds an ``flock`` on one of them.
The lock belongs to the open file, which the git process inherits, so a slot stays
taken for as long as git runs, even past the worker that started it, and the kernel
frees it when the last holder exits, however it exits.
"""

from __future__ import annotations

import fcntl
import os
import random
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .wants import FetchRefused

#: Seconds a fetch waits for a free slot before it is told to try again.
WAIT_SECONDS = 60
_POLL = 0.05


class PackSlots:
    """At most ``count`` holders at once, across processes and threads."""

    def __init__(self, directory: Path, count: int) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.paths = [directory / f"slot-{index}" for index in range(count)]

    @contextmanager
    def hold(self, wait: float = WAIT_SECONDS) -> Iterator[int]:
        """Wait for a free slot; yields the descriptor to hand to the process it is for."""
        deadline = time.monotonic() + wait
        while True:
            fd = self._try_any()
            if fd is not None:
                break
            if time.monotonic() > deadline:
                raise FetchRefused("upload-pack: the server is busy; try again in a minute")
            time.sleep(_POLL)
        try:
            yield fd
        finally:
            os.close(fd)

    def _try_any(self) -> int | None:
        start = random.randrange(len(self.paths))  # spread waiters over the slots
        for path in self.paths[start:] + self.paths[:start]:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                continue
            return fd
        return None
