"""Where LFS bytes live: the local filesystem by default, or an S3-compatible bucket.

Local storage keeps one copy per oid (content-addressed, so deduplication is safe) and
receives uploads through hfgit itself. The S3 backend hands clients presigned URLs so the
bytes never pass through hfgit; its keys are per repository because a bucket cannot tell
who uploaded an object.
"""

from __future__ import annotations

import base64
import hashlib
import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..config import MiB, Settings

CHUNK = MiB


class ObjectMismatch(ValueError):
    """Uploaded bytes that are not the object they claim to be; nothing was kept."""


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


class LocalStorage:
    """Objects under ``root/objects/ab/cd/<oid>``; uploads staged in ``root/tmp``."""

    presigned = False

    def __init__(self, root: Path) -> None:
        self.root = root
        self.tmp = root / "tmp"

    def path(self, oid: str) -> Path:
        return self.root / "objects" / oid[:2] / oid[2:4] / oid

    def receive(self, oid: str, size: int, read: Callable[[int], bytes]) -> None:
        """Stream an upload to disk, hashing as it is written; keep it only if it matches.

        Each upload writes its own temporary file and renames it into place atomically,
        so concurrent uploads of one object are safe and a failed one leaves nothing.
        """
        self.tmp.mkdir(parents=True, exist_ok=True, mode=0o700)
        digest = hashlib.sha256()
        received = 0
        fd, name = tempfile.mkstemp(dir=self.tmp, prefix=f"{oid[:16]}-")
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
        finally:
            if os.path.exists(name):
                os.unlink(name)


class S3Storage:
    """Objects in an S3-compatible bucket under ``<repo storage id>/<oid>``.

    Upload URLs are presigned with the object's size and SHA-256 checksum, which S3
    enforces. Verification compares the checksum S3 reports, and re-hashes the object
    (streaming) when the store reports none, as some S3-compatible servers do.
    """

    presigned = True

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

    def upload_href(self, key: str, oid: str, size: int, ttl: int) -> Href:
        checksum = base64.b64encode(bytes.fromhex(oid)).decode()
        url = self.client.generate_presigned_url(
            "put_object",
            Params={
                "Bucket": self.bucket,
                "Key": key,
                "ContentLength": size,
                "ChecksumSHA256": checksum,
            },
            ExpiresIn=ttl,
        )
        headers = {"x-amz-checksum-sha256": checksum, "Content-Type": "application/octet-stream"}
        return Href(url, headers)

    def download_href(self, key: str, ttl: int) -> Href:
        url = self.client.generate_presigned_url(
            "get_object", Params={"Bucket": self.bucket, "Key": key}, ExpiresIn=ttl
        )
        return Href(url, {})

    def verify(self, key: str, oid: str, size: int) -> bool:
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


Storage = LocalStorage | S3Storage


def open_storage(settings: Settings) -> Storage:
    """The storage the settings select; S3 needs a bucket (and boto3 installed)."""
    if settings.lfs_storage == "s3":
        if not settings.lfs_s3_bucket:
            raise ValueError("HFGIT_LFS_STORAGE=s3 needs HFGIT_LFS_S3_BUCKET.")
        return S3Storage(settings.lfs_s3_bucket, settings.lfs_s3_endpoint)
    return LocalStorage(settings.lfs_dir)
