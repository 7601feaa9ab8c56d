"""A full disk, told apart from other I/O errors: the one a client can do nothing about
but wait, and that must leave no partial write behind."""

from __future__ import annotations

import errno
import os

#: "No space left on device" and "disk quota exceeded".
NO_SPACE = frozenset({errno.ENOSPC, errno.EDQUOT})

#: Free bytes a filesystem must keep for a push to move its refs (a ref file, its lock,
#: ``packed-refs``): below it a push is refused before its pack is moved in.
REF_RESERVE = 1024 * 1024


def out_of_space(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in NO_SPACE


def free_bytes(path: str | os.PathLike) -> int:
    """Bytes an unprivileged writer may still use on ``path``'s filesystem."""
    info = os.statvfs(path)
    return info.f_bavail * info.f_frsize
