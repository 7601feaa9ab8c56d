"""Helpers shared by the LFS tests: raw batch/transfer requests and what the server holds."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import sqlalchemy as sa

from hfgit.names import RepoId
from hfgit.store import lfs_objects
from hubtest import Git, Hub, http_request

MEDIA = "application/vnd.git-lfs+json"
#: The bucket the ``s3_client`` fixture makes on the moto server.
BUCKET = "hfgit-lfs-test"
#: moto accepts any credentials; these only have to look like AWS ones.
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def batch(
    hub: Hub, repo: str | RepoId, operation: str, objects: list[dict], token: str | None = None
) -> tuple[int, dict, dict]:
    """A batch API request as git-lfs sends it; the answer decoded."""
    url = f"{hub.repo_url(repo)}.git/info/lfs/objects/batch"
    payload = {"operation": operation, "transfers": ["basic"], "objects": objects}
    status, headers, body = http_request(
        "POST",
        url,
        token=token,
        body=json.dumps(payload).encode(),
        headers={"Accept": MEDIA, "Content-Type": MEDIA},
    )
    return status, headers, json.loads(body)


def blob(size: int) -> tuple[bytes, dict]:
    """Random bytes and their batch ``{"oid", "size"}`` item."""
    data = os.urandom(size)
    return data, {"oid": hashlib.sha256(data).hexdigest(), "size": size}


def held(hub: Hub, repo: RepoId, oid: str) -> bool:
    """Whether the repository's database rows hold ``oid`` (not only the storage)."""
    record = hub.accounts.repos.get(repo)
    with hub.accounts.store.begin() as conn:
        row = conn.execute(
            sa.select(lfs_objects.c.oid).where(
                lfs_objects.c.repo_id == record.id, lfs_objects.c.oid == oid
            )
        ).first()
    return row is not None


def stored_path(hub: Hub, oid: str) -> Path:
    return hub.data_dir / "lfs" / "objects" / oid[:2] / oid[2:4] / oid


def upload(hub: Hub, repo: RepoId, token: str, data: bytes, item: dict) -> None:
    """Batch, upload and verify as git-lfs does, asserting each step succeeds."""
    status, _, answer = batch(hub, repo, "upload", [item], token)
    assert status == 200, answer
    actions = answer["objects"][0]["actions"]
    status, _, body = http_request("PUT", actions["upload"]["href"], body=data)
    assert status == 200, body
    verify = json.dumps(item).encode()
    status, _, body = http_request("POST", actions["verify"]["href"], body=verify)
    assert status == 200, body


def lfs_worktree(git: Git, path: Path, weights: bytes) -> tuple[Path, str]:
    """A new work tree tracking ``*.safetensors`` in LFS, with ``weights`` committed."""
    git.run("init", "-q", "-b", "main", str(path))
    git.run("lfs", "track", "*.safetensors", cwd=path)
    return path, git.commit(path, {"model.safetensors": weights, "README.md": "weights\n"})
