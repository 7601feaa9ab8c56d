"""Where LFS bytes live: the local filesystem by default, or an S3-compatible bucket.

Both backends offer :class:`Storage`: nothing above them asks which one it has. Local
storage keeps one copy per oid (content-addressed, so deduplication is safe) and
receives uploads through hfgit itself. The S3 backend hands clients presigned URLs so the
bytes never pass through hfgit; its keys are per repository because a bucket cannot tell
who uploaded an object.
"""

from __future__ import annotations

import base64
import hashlib
import io
import logging
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from ..config import MiB, Settings
from ..disk import out_of_space

log = logging.getLogger(__name__)

CHUNK = MiB
_OID = re.compile(r"[0-9a-f]{64}")


class ObjectMismatch(ValueError):
    """Uploaded bytes that are not the object they claim to be; nothing was kept."""


class ObjectMissing(LookupError):
    """The bytes asked for are not in this storage, or not served through hfgit."""


class StorageFull(Exception):
    """The storage has no room for an upload; nothing of it was kept."""


def _raise_if_full(error: OSError) -> None:
    if out_of_space(error):
        raise StorageFull(
            "The server is out of disk space; the upload was not stored. Try again later."
        ) from error


def _mismatch(oid: str, size: int, got_size: int, got_oid: str) -> ObjectMismatch:
    if got_size != size:
        return ObjectMismatch(
            f"Object {oid}: received {got_size} bytes, expected {size}. Nothing was stored."
        )
    return ObjectMismatch(
        f"Object {oid}: the uploaded bytes hash to {got_oid}. Nothing was stored."
    )


@dataclass(frozen=True)
class Href:
    url: str
    headers: dict[str, str]


@dataclass(frozen=True)
class StoredObject:
    """One copy of an object's bytes, as :meth:`Storage.stored` lists them."""

    oid: str
    #: The repository the copy was uploaded for, or None where one copy serves them all.
    storage_id: str | None
    size: int
    modified: float
    #: Where the backend keeps it (a path, a key), for :meth:`Storage.remove`.
    location: str


class Storage(ABC):
    """Where the bytes of LFS objects live, for every repository of the server.

    A backend either moves bytes through hfgit's own signed URLs (``*_href`` return
    None; :meth:`open` and :meth:`receive` do the work) or hands clients URLs of its own.
    """

    @abstractmethod
    def download_href(self, storage_id: str, oid: str, ttl: int) -> Href | None:
        """A URL the client downloads the object from, or None to go through hfgit."""

    @abstractmethod
    def upload_href(self, storage_id: str, oid: str, size: int, ttl: int) -> Href | None:
        """A URL the client uploads the object to, or None to go through hfgit."""

    @abstractmethod
    def open(self, storage_id: str, oid: str, size: int, *, start: int = 0) -> BinaryIO:
        """The object's bytes from ``start`` on, to stream; the caller reads what it needs.

        Raises :class:`ObjectMissing` when the object is not here whole.
        """

    @abstractmethod
    def receive(self, storage_id: str, oid: str, size: int, read: Callable[[int], bytes]) -> None:
        """Store an upload streamed through hfgit; :class:`ObjectMismatch` if it is not it."""

    @abstractmethod
    def confirm_upload(self, storage_id: str, oid: str, size: int) -> None:
        """Check that an upload that did not pass through :meth:`receive` arrived whole.

        Raises :class:`ObjectMissing` or :class:`ObjectMismatch` when it did not.
        """

    @abstractmethod
    def stored(self) -> Iterator[StoredObject]:
        """Every object copy held, for garbage collection."""

    @abstractmethod
    def remove(self, item: StoredObject, cutoff: float) -> bool:
        """Delete ``item`` unless it was replaced after ``cutoff``; True if it was deleted."""

    @abstractmethod
    def remove_leftovers(self, cutoff: float) -> None:
        """Delete what uploads that crashed left behind before ``cutoff``."""

    @abstractmethod
    def restore_set_aside(self, cutoff: float) -> int:
        """Put back the copies a killed gc set aside before ``cutoff``; how many."""


class LocalStorage(Storage):
    """Objects under ``root/objects/ab/cd/<oid>``; uploads staged in ``root/tmp``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"

    def path(self, oid: str) -> Path:
        return self.root / "objects" / oid[:2] / oid[2:4] / oid

    def download_href(self, storage_id: str, oid: str, ttl: int) -> None:
        return None

    def upload_href(self, storage_id: str, oid: str, size: int, ttl: int) -> None:
        return None

    def open(self, storage_id: str, oid: str, size: int, *, start: int = 0) -> BinaryIO:
        try:
            handle = self.path(oid).open("rb")
        except FileNotFoundError:
            log.error("LFS object %s missing from storage", oid)
            raise ObjectMissing(oid) from None
        if os.fstat(handle.fileno()).st_size != size:
            handle.close()
            log.error("LFS object %s in storage has the wrong size", oid)
            raise ObjectMissing(oid)
        # A real file: the WSGI server may send it with sendfile from this offset.
        handle.seek(start)
        return handle

    def confirm_upload(self, storage_id: str, oid: str, size: int) -> None:
        # Every upload here passes through receive(), which is where objects join a
        # repository: a copy that some other repository uploaded proves nothing.
        raise ObjectMissing(f"Object {oid} was not uploaded to this repository.")

    def receive(self, storage_id: str, oid: str, size: int, read: Callable[[int], bytes]) -> None:
        """Stream an upload to disk, hashing as it is written; keep it only if it matches.

        Each upload writes its own temporary file and renames it into place atomically,
        so concurrent uploads of one object are safe and a failed one leaves nothing.
        """
        digest = hashlib.sha256()
        received = 0
        try:
            self.tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd, name = tempfile.mkstemp(dir=self.tmp, prefix=f"{oid[:16]}-")
        except OSError as error:
            _raise_if_full(error)
            raise
        try:
            with os.fdopen(fd, "wb") as out:
                while chunk := read(CHUNK):
                    received += len(chunk)
                    if received > size:
                        raise _mismatch(oid, size, received, "")
                    digest.update(chunk)
                    out.write(chunk)
                out.flush()
                os.fsync(out.fileno())
            if received != size or digest.hexdigest() != oid:
                raise _mismatch(oid, size, received, digest.hexdigest())
            final = self.path(oid)
            final.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            os.replace(name, final)
        except OSError as error:
            _raise_if_full(error)
            raise
        finally:
            if os.path.exists(name):
                os.unlink(name)

    def stored(self) -> Iterator[StoredObject]:
        for root, _dirs, files in os.walk(self.root / "objects"):
            for name in files:
                if not _OID.fullmatch(name):
                    continue
                path = os.path.join(root, name)
                try:
                    info = os.stat(path)
                except FileNotFoundError:
                    continue
                yield StoredObject(name, None, info.st_size, info.st_mtime, path)

    def remove(self, item: StoredObject, cutoff: float) -> bool:
        """Delete the copy unless an upload put a fresh one there since it was listed.

        An upload replaces the file (``os.replace``) before it writes the object's row, so
        a copy newer than the grace period is one to keep: moved aside first, then checked.
        """
        path = item.location
        aside = path + ".gc"
        try:
            os.rename(path, aside)
        except FileNotFoundError:
            return False
        if os.stat(aside).st_mtime > cutoff:
            with suppress(FileExistsError):  # an even newer upload is already in place
                os.link(aside, path)
            os.unlink(aside)
            return False
        os.unlink(aside)
        return True

    def restore_set_aside(self, cutoff: float) -> int:
        """A gc killed between setting a copy aside (``<oid>.gc``) and deciding on it
        leaves the only copy there: put it back (the next gc decides again). The rename
        set the file's ctime, so one younger than ``cutoff`` may be a live gc's."""
        restored = 0
        for root, _dirs, files in os.walk(self.root / "objects"):
            for name in files:
                if not (name.endswith(".gc") and _OID.fullmatch(name[:-3])):
                    continue
                aside = os.path.join(root, name)
                try:
                    if os.stat(aside).st_ctime > cutoff:
                        continue
                    with suppress(FileExistsError):
                        os.link(aside, aside[:-3])
                    os.unlink(aside)
                except FileNotFoundError:
                    continue
                restored += 1
        return restored

    def remove_leftovers(self, cutoff: float) -> None:
        if not self.tmp.is_dir():
            return
        for leftover in self.tmp.iterdir():
            try:
                stale = leftover.stat().st_mtime <= cutoff
            except FileNotFoundError:
                continue  # that upload just finished
            if stale:
                leftover.unlink(missing_ok=True)


class S3Storage(Storage):
    """Objects in an S3-compatible bucket under ``<repo storage id>/<oid>``.

    Upload URLs are presigned for the key alone, so that clients which send no headers
    (``huggingface_hub``) can use them. Verification compares the size and the SHA-256
    checksum S3 reports, and re-hashes the object (streaming) when the store reports none,
    as it does for uploads that sent no checksum; a wrong object is deleted.
    """

    def __init__(self, bucket: str, endpoint: str | None = None, client=None) -> None:
        if client is None:
            import boto3
            from botocore.config import Config

            client = boto3.client(
                "s3", endpoint_url=endpoint, config=Config(signature_version="s3v4")
            )
        self.client = client
        self.bucket = bucket

    @staticmethod
    def key(repo_storage_id: str, oid: str) -> str:
        return f"{repo_storage_id}/{oid[:2]}/{oid[2:4]}/{oid}"

    def upload_href(self, storage_id: str, oid: str, size: int, ttl: int) -> Href:
        # No header may be required: huggingface_hub sends the PUT with none at all (not
        # even the batch answer's ``header``). The size and checksum are checked at verify.
        url = self.client.generate_presigned_url(
            "put_object",
            Params={"Bucket": self.bucket, "Key": self.key(storage_id, oid)},
            ExpiresIn=ttl,
        )
        return Href(url, {})

    def download_href(self, storage_id: str, oid: str, ttl: int) -> Href:
        url = self.client.generate_presigned_url(
            "get_object",
            Params={"Bucket": self.bucket, "Key": self.key(storage_id, oid)},
            ExpiresIn=ttl,
        )
        return Href(url, {})

    def open(self, storage_id: str, oid: str, size: int, *, start: int = 0) -> BinaryIO:
        """Stream the object from the bucket (git-lfs downloads from it directly; the Hub's
        ``/resolve`` serves the bytes through hfgit), from ``start`` on, in chunks."""
        from botocore.exceptions import ClientError

        params = {"Bucket": self.bucket, "Key": self.key(storage_id, oid)}
        if start:
            params["Range"] = f"bytes={start}-"
        try:
            answer = self.client.get_object(**params)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                log.error("LFS object %s missing from the bucket", oid)
                raise ObjectMissing(oid) from None
            raise
        if answer.get("ContentLength") != size - start:
            answer["Body"].close()
            log.error("LFS object %s in the bucket has the wrong size", oid)
            raise ObjectMissing(oid)
        return _S3Stream(answer["Body"])

    def receive(self, storage_id: str, oid: str, size: int, read: Callable[[int], bytes]) -> None:
        raise ObjectMissing("Uploads go to the object store for this server.")

    def confirm_upload(self, storage_id: str, oid: str, size: int) -> None:
        if not self._verify(self.key(storage_id, oid), oid, size):
            raise ObjectMismatch(f"Object {oid} was not uploaded or does not match.")

    def stored(self) -> Iterator[StoredObject]:
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket):
            for item in page.get("Contents", []):
                storage_id, _, rest = item["Key"].partition("/")
                oid = rest.rsplit("/", 1)[-1]
                if _OID.fullmatch(oid):
                    modified = item["LastModified"].timestamp()
                    yield StoredObject(oid, storage_id, item["Size"], modified, item["Key"])

    def remove(self, item: StoredObject, cutoff: float) -> bool:
        self.client.delete_object(Bucket=self.bucket, Key=item.location)
        return True

    def remove_leftovers(self, cutoff: float) -> None:
        """Nothing to do: an upload to the bucket is whole or absent."""

    def restore_set_aside(self, cutoff: float) -> int:
        """Nothing to do: gc deletes a bucket's object in one request."""
        return 0

    def _verify(self, key: str, oid: str, size: int) -> bool:
        """True when ``key`` holds exactly ``oid``; a wrong object is deleted."""
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key, ChecksumMode="ENABLED")
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                return False
            raise
        expected = base64.b64encode(bytes.fromhex(oid)).decode()
        reported = head.get("ChecksumSHA256")
        if head.get("ContentLength") == size and reported is not None:
            ok = reported == expected
        elif head.get("ContentLength") == size:
            ok = self._hash(key) == oid
        else:
            ok = False
        if not ok:
            self.client.delete_object(Bucket=self.bucket, Key=key)
        return ok

    def _hash(self, key: str) -> str:
        digest = hashlib.sha256()
        body = self.client.get_object(Bucket=self.bucket, Key=key)["Body"]
        for chunk in body.iter_chunks(CHUNK):
            digest.update(chunk)
        return digest.hexdigest()


class _S3Stream(io.RawIOBase):
    """An S3 object's body as a readable stream, for ``wsgi.file_wrapper``."""

    def __init__(self, body) -> None:
        self.body = body

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        return self.body.read(None if size < 0 else size)

    def close(self) -> None:
        self.body.close()
        super().close()


def open_storage(settings: Settings) -> Storage:
    """The storage the settings select; S3 needs a bucket (and boto3 installed)."""
    if settings.lfs_storage == "s3":
        if not settings.lfs_s3_bucket:
            raise ValueError("HFGIT_LFS_STORAGE=s3 needs HFGIT_LFS_S3_BUCKET.")
        return S3Storage(settings.lfs_s3_bucket, settings.lfs_s3_endpoint)
    return LocalStorage(settings.lfs_dir)
