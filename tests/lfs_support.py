"""Helpers shared by the LFS tests: raw batch/transfer requests and what the server holds."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import urllib.error
import urllib.request
from pathlib import Path

import sqlalchemy as sa

from hfgit.store import lfs_objects
from hubtest import Git, Hub, require_tool

MEDIA = "application/vnd.git-lfs+json"


def enable_lfs(git: Git) -> None:
    """Skip without git-lfs (fail under CI); install its filters in git's isolated HOME."""
    require_tool("git-lfs", "git-lfs")
    git.run("lfs", "install", "--skip-repo")


def http(
    method: str, url: str, *, token: str | None = None, body: bytes | None = None, headers=None
) -> tuple[int, dict, bytes]:
    """One request; returns status, headers and body, errors included."""
    request = urllib.request.Request(url, data=body, method=method, headers=dict(headers or {}))
    if token is not None:
        basic = base64.b64encode(f"user:{token}".encode()).decode()
        request.add_header("Authorization", f"Basic {basic}")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def batch(
    hub: Hub, repo, operation: str, objects: list[dict], token: str | None = None
) -> tuple[int, dict, dict]:
    url = f"{hub.repo_url(repo)}.git/info/lfs/objects/batch"
    payload = {"operation": operation, "transfers": ["basic"], "objects": objects}
    status, headers, body = http(
        "POST",
        url,
        token=token,
        body=json.dumps(payload).encode(),
        headers={"Accept": MEDIA, "Content-Type": MEDIA},
    )
    return status, headers, json.loads(body)


def blob(size: int) -> tuple[bytes, dict]:
    data = os.urandom(size)
    return data, {"oid": hashlib.sha256(data).hexdigest(), "size": size}


def held(hub: Hub, repo, oid: str) -> bool:
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


def upload(hub: Hub, repo, token: str, data: bytes, item: dict) -> None:
    status, _, answer = batch(hub, repo, "upload", [item], token)
    assert status == 200, answer
    actions = answer["objects"][0]["actions"]
    status, _, body = http("PUT", actions["upload"]["href"], body=data)
    assert status == 200, body
    status, _, body = http("POST", actions["verify"]["href"], body=json.dumps(item).encode())
    assert status == 200, body


def lfs_worktree(git: Git, path: Path, weights: bytes) -> Path:
    git.run("init", "-q", "-b", "main", str(path))
    git.run("lfs", "track", "*.safetensors", cwd=path)
    return path, git.commit(path, {"model.safetensors": weights, "README.md": "weights\n"})
