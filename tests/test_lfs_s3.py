"""The S3 storage backend against a local S3 emulator (moto's server mode)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from hubtest import Git, Hub, http_request, running_hub, unique
from lfs_support import AWS_ENV, BUCKET, batch, held, lfs_worktree


@pytest.fixture(scope="module")
def s3_hub(tmp_path_factory: pytest.TempPathFactory, s3_endpoint: str, s3_client) -> Iterator[Hub]:
    data_dir = tmp_path_factory.mktemp("s3hub") / "data"
    env = {
        **AWS_ENV,
        "HFGIT_LFS_STORAGE": "s3",
        "HFGIT_LFS_S3_ENDPOINT": s3_endpoint,
        "HFGIT_LFS_S3_BUCKET": BUCKET,
    }
    with running_hub(data_dir, env=env, workers=1) as hub:
        yield hub


def _put_headers(upload: dict) -> dict:
    """The upload's headers (none are required), plus a Content-Type: urllib would send a
    form's, which moto's server then tries to parse."""
    return {**upload["header"], "Content-Type": "application/octet-stream"}


def _key(hub: Hub, repo, oid: str) -> str:
    storage_id = hub.accounts.repos.get(repo).storage_id
    return f"{storage_id}/{oid[:2]}/{oid[2:4]}/{oid}"


def test_push_and_clone_through_s3(s3_hub: Hub, s3_client, lfs_git: Git, tmp_path: Path):
    user = s3_hub.make_user()
    repo = s3_hub.make_repo(f"{user}/{unique('m')}", private=True)
    weights = os.urandom(2 * 1024 * 1024 + 17)
    oid = hashlib.sha256(weights).hexdigest()
    work, _ = lfs_worktree(lfs_git, tmp_path / "work", weights)
    url = s3_hub.repo_url(repo)
    lfs_git.run("push", "-q", url, "main", cwd=work, token=s3_hub.make_token(user, "write"))

    stored = s3_client.get_object(Bucket=BUCKET, Key=_key(s3_hub, repo, oid))["Body"].read()
    assert stored == weights
    assert held(s3_hub, repo, oid)
    assert not (s3_hub.data_dir / "lfs" / "objects").exists()  # bytes went to S3 only

    clone = tmp_path / "clone"
    lfs_git.run("clone", "-q", url, str(clone), token=s3_hub.make_token(user, "read"))
    assert (clone / "model.safetensors").read_bytes() == weights


def test_s3_wrong_bytes_are_refused_at_verify_and_deleted(s3_hub: Hub, s3_client):
    user = s3_hub.make_user()
    repo = s3_hub.make_repo(f"{user}/{unique('m')}")
    write = s3_hub.make_token(user, "write")
    data = os.urandom(50_000)
    item = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}
    status, _, answer = batch(s3_hub, repo, "upload", [item], write)
    assert status == 200
    actions = answer["objects"][0]["actions"]
    verify_body = json.dumps(item).encode()

    # Verify before any upload: nothing to link.
    assert http_request("POST", actions["verify"]["href"], body=verify_body)[0] == 422

    upload = actions["upload"]
    status, _, _ = http_request(
        "PUT", upload["href"], body=os.urandom(len(data)), headers=_put_headers(upload)
    )
    if status == 200:  # a store that does not check the checksum itself (moto)
        assert http_request("POST", actions["verify"]["href"], body=verify_body)[0] == 422
    listed = s3_client.list_objects_v2(Bucket=BUCKET, Prefix=_key(s3_hub, repo, item["oid"]))
    assert listed.get("KeyCount", 0) == 0
    assert not held(s3_hub, repo, item["oid"])

    status, _, _ = http_request("PUT", upload["href"], body=data, headers=_put_headers(upload))
    assert status == 200
    assert http_request("POST", actions["verify"]["href"], body=verify_body)[0] == 200
    assert held(s3_hub, repo, item["oid"])


def _s3_upload(hub: Hub, repo, token: str, data: bytes) -> dict:
    item = {"oid": hashlib.sha256(data).hexdigest(), "size": len(data)}
    status, _, answer = batch(hub, repo, "upload", [item], token)
    assert status == 200
    actions = answer["objects"][0]["actions"]
    upload = actions["upload"]
    assert http_request("PUT", upload["href"], body=data, headers=_put_headers(upload))[0] == 200
    assert http_request("POST", actions["verify"]["href"], body=json.dumps(item).encode())[0] == 200
    return item


def test_s3_gc_removes_the_objects_of_deleted_repos(s3_hub: Hub, s3_client):
    user = s3_hub.make_user()
    token = s3_hub.make_token(user, "write")
    doomed = s3_hub.make_repo(f"{user}/{unique('doomed')}")
    keeper = s3_hub.make_repo(f"{user}/{unique('keeper')}")
    gone = _s3_upload(s3_hub, doomed, token, os.urandom(3000))
    kept = _s3_upload(s3_hub, keeper, token, os.urandom(3000))
    gone_key, kept_key = _key(s3_hub, doomed, gone["oid"]), _key(s3_hub, keeper, kept["oid"])
    s3_hub.accounts.repos.delete(doomed)

    # Just uploaded: inside the grace period, kept.
    result = s3_hub.cli("lfs", "gc")
    assert "removed 0" in result.stderr
    assert s3_client.list_objects_v2(Bucket=BUCKET, Prefix=gone_key)["KeyCount"] == 1

    result = s3_hub.cli("lfs", "gc", "--grace-hours", "0")
    # Other tests of this module may leave unreferenced keys too; this one must be among them.
    removed = int(re.search(r"removed (\d+)", result.stderr).group(1))
    assert removed >= 1
    assert s3_client.list_objects_v2(Bucket=BUCKET, Prefix=gone_key)["KeyCount"] == 0
    assert s3_client.list_objects_v2(Bucket=BUCKET, Prefix=kept_key)["KeyCount"] == 1
    assert held(s3_hub, keeper, kept["oid"])


def test_huggingface_hub_uploads_and_downloads_through_s3(
    s3_hub: Hub, s3_client, hf_home: Path, tmp_path: Path
):
    """huggingface_hub PUTs with no headers at all: the presigned URL must need none."""
    from huggingface_hub import HfApi, hf_hub_download

    user = s3_hub.make_user()
    repo = s3_hub.make_repo(f"{user}/{unique('m')}", private=True)
    token = s3_hub.make_token(user, "write")
    data = os.urandom(12 * 1024 * 1024 + 3)
    oid = hashlib.sha256(data).hexdigest()
    status, _, answer = batch(s3_hub, repo, "upload", [{"oid": oid, "size": len(data)}], token)
    assert status == 200 and answer["objects"][0]["actions"]["upload"]["header"] == {}

    api = HfApi(endpoint=s3_hub.url, token=token)
    (tmp_path / "big.bin").write_bytes(data)
    api.upload_file(
        path_or_fileobj=tmp_path / "big.bin", path_in_repo="big.bin", repo_id=repo.repo_id
    )
    stored = s3_client.get_object(Bucket=BUCKET, Key=_key(s3_hub, repo, oid))["Body"].read()
    assert stored == data
    assert held(s3_hub, repo, oid)

    path = hf_hub_download(repo.repo_id, "big.bin", endpoint=s3_hub.url, token=token)
    assert Path(path).read_bytes() == data
    url = f"{s3_hub.url}/{repo.repo_id}/resolve/main/big.bin"
    status, headers, body = http_request(
        "GET", url, token=token, headers={"Range": "bytes=100-199"}
    )
    assert status == 206 and body == data[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(data)}"
