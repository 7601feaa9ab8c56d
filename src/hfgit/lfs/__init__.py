"""Git LFS objects: where their bytes live, which repository holds which, signed transfers.

Nothing here knows HTTP; ``hfgit.server.lfs`` speaks the batch API on top of it.
"""

from .objects import LfsObjects
from .signing import Grant, InvalidSignature, Signer
from .storage import (
    LocalStorage,
    ObjectMismatch,
    ObjectMissing,
    S3Storage,
    Storage,
    StorageFull,
    open_storage,
)

__all__ = [
    "Grant",
    "InvalidSignature",
    "LfsObjects",
    "LocalStorage",
    "ObjectMismatch",
    "ObjectMissing",
    "S3Storage",
    "Signer",
    "Storage",
    "StorageFull",
    "open_storage",
]
