"""Git LFS end to end: the real ``git`` and ``git-lfs`` against ``hfgit serve``."""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from hfgit.lfs import Grant, Signer
from hubtest import Git, Hub, http_request, unique
from lfs_support import batch, blob, held, lfs_worktree, stored_path, upload


def test_push_with_write_token_and_clone_with_read_token(hub: Hub, lfs_git: Git, tmp_path: Path):
    user = hub.make_user()
    repo = hub.make_repo(f"{user}/{unique('m')}", private=True)
    weights = os.urandom(3 * 1024 * 1024)
    oid = hashlib.sha256(weights).hexdigest()
    work, _ = lfs_worktree(lfs_git, tmp_path / "work", weights)
    url = hub.repo_url(repo)
    lfs_git.run("push", "-q", url, "main", cwd=work, token=hub.make_token(user, "write"))

    assert held(hub, repo, oid)
    assert stored_path(hub, oid).read_bytes() == weights
    # What git stored is the pointer, not the weights.
    pointer = lfs_git.run("show", "HEAD:model.safetensors", cwd=work).stdout
    assert f"oid sha256:{oid}" in pointer

    clone = tmp_path / "clone"
    lfs_git.run("clone", "-q", url, str(clone), token=hub.make_token(user, "read"))
    assert (clone / "model.safetensors").read_bytes() == weights


def test_read_token_cannot_upload(hub: Hub, lfs_git: Git, tmp_path: Path):
    user = hub.make_user()
    repo = hub.make_repo(f"{user}/{unique('m')}")
    weights = os.urandom(100_000)
    oid = hashlib.sha256(weights).hexdigest()
    work, _ = lfs_worktree(lfs_git, tmp_path / "work", weights)
    read = hub.make_token(user, "read")

    result = lfs_git.run(
        "lfs", "push", "--all", hub.repo_url(repo), cwd=work, token=read, check=False
    )
    assert result.returncode != 0
    assert "has the read role" in result.stderr
    assert not held(hub, repo, oid)

    status, _, answer = batch(hub, repo, "upload", [{"oid": oid, "size": len(weights)}], read)
    assert status == 403
    assert "read role" in answer["message"]


def test_fine_grained_token_for_another_repo_cannot_download(hub: Hub):
    user = hub.make_user()
    repo = hub.make_repo(f"{user}/{unique('m')}", private=True)
    other = hub.make_repo(f"{user}/{unique('m')}", private=True)
    data, item = blob(1000)
    upload(hub, repo, hub.make_token(user, "write"), data, item)
    scoped = hub.make_token(user, "fineGrained", scopes=[f"model:{other.repo_id}=repo.write"])

    status, _, answer = batch(hub, repo, "download", [item], scoped)
    missing = batch(hub, f"{user}/{unique('nothing')}", "download", [item], scoped)
    assert status == 404
    assert (status, answer) == (missing[0], missing[2])  # no existence oracle

    status, _, answer = batch(hub, other, "download", [item], scoped)
    assert status == 200
    assert answer["objects"][0]["error"]["code"] == 404


def test_anonymous_gets_basic_challenge_and_can_read_public(hub: Hub):
    user = hub.make_user()
    private = hub.make_repo(f"{user}/{unique('m')}", private=True)
    public = hub.make_repo(f"{user}/{unique('m')}")
    data, item = blob(2000)
    upload(hub, public, hub.make_token(user, "write"), data, item)

    for repo, operation in ((private, "download"), (public, "upload")):
        status, headers, answer = batch(hub, repo, operation, [item])
        assert status == 401
        assert headers["WWW-Authenticate"].startswith("Basic ")
        assert "user access token" in answer["message"]

    status, _, answer = batch(hub, public, "download", [item])
    assert status == 200
    href = answer["objects"][0]["actions"]["download"]["href"]
    assert http_request("GET", href)[2] == data

    status, headers, _ = batch(hub, public, "download", [item], token="not-a-token-password")
    assert status == 401
    assert "WWW-Authenticate" in headers


def test_signed_urls_refuse_tampering_and_expiry(hub: Hub):
    user = hub.make_user()
    repo = hub.make_repo(f"{user}/{unique('m')}")
    other = hub.make_repo(f"{user}/{unique('m')}")
    write = hub.make_token(user, "write")
    data, item = blob(4096)
    second, second_item = blob(4096)
    upload(hub, repo, write, data, item)
    upload(hub, repo, write, second, second_item)
    upload(hub, other, write, data, item)
    status, _, answer = batch(hub, repo, "download", [item], write)
    href = answer["objects"][0]["actions"]["download"]["href"]
    assert http_request("GET", href)[:1] == (200,)

    base = href.split("?")[0]
    oid, size = item["oid"], item["size"]
    forged = [
        href.replace(oid, second_item["oid"]),  # another object
        href.replace(f"/{size}?", f"/{size - 1}?"),  # another size
        href.replace(repo.url_path, other.url_path),  # another repository
        href.replace("expires=", "expires=9"),  # a later expiry
        href[:-4] + ("0000" if not href.endswith("0000") else "1111"),  # the signature
        base,  # no signature at all
    ]
    for url in forged:
        status, _, body = http_request("GET", url)
        assert status == 403, url
        assert b"not valid" in body
    # The same URL cannot be used for another operation.
    status, _, _ = http_request("PUT", href, body=data)
    assert status == 403

    record = hub.accounts.repos.get(repo)
    past = int(time.time()) - 5
    signature = Signer(hub.accounts.store.secret()).sign(
        Grant("download", record.hub_id, oid, size, past)
    )
    expired = f"{base}?expires={past}&signature={signature}"
    status, _, body = http_request("GET", expired)
    assert status == 403
    assert b"expired" in body


def test_mismatched_or_partial_upload_stores_nothing(hub: Hub):
    user = hub.make_user()
    repo = hub.make_repo(f"{user}/{unique('m')}")
    write = hub.make_token(user, "write")
    data, item = blob(300_000)
    status, _, answer = batch(hub, repo, "upload", [item], write)
    actions = answer["objects"][0]["actions"]

    wrong = os.urandom(item["size"])
    status, _, body = http_request("PUT", actions["upload"]["href"], body=wrong)
    assert status == 422
    assert b"Nothing was stored" in body
    status, _, body = http_request("PUT", actions["upload"]["href"], body=data[:-10])
    assert status == 422
    status, _, body = http_request("PUT", actions["upload"]["href"], body=data + b"extra")
    assert status == 413

    assert not stored_path(hub, item["oid"]).exists()
    assert not held(hub, repo, item["oid"])
    assert list((hub.data_dir / "lfs" / "tmp").glob(f"{item['oid'][:16]}-*")) == []
    status, _, _ = http_request("POST", actions["verify"]["href"], body=json.dumps(item).encode())
    assert status == 404

    # The same URL still accepts the right bytes afterwards.
    status, _, _ = http_request("PUT", actions["upload"]["href"], body=data)
    assert status == 200
    assert stored_path(hub, item["oid"]).read_bytes() == data


def test_knowing_an_oid_gives_no_access_to_another_repos_object(hub: Hub):
    alice, mallory = hub.make_user(), hub.make_user()
    secret_repo = hub.make_repo(f"{alice}/{unique('m')}", private=True)
    own = hub.make_repo(f"{mallory}/{unique('m')}")
    data, item = blob(5000)
    upload(hub, secret_repo, hub.make_token(alice, "write"), data, item)
    token = hub.make_token(mallory, "write")

    status, _, answer = batch(hub, own, "download", [item], token)
    assert answer["objects"][0]["error"]["code"] == 404
    status, _, answer = batch(hub, own, "upload", [item], token)
    actions = answer["objects"][0]["actions"]  # the bytes must be uploaded, not linked
    status, _, _ = http_request("POST", actions["verify"]["href"], body=json.dumps(item).encode())
    assert status == 404
    assert not held(hub, own, item["oid"])

    # Someone who has the bytes may add them to their own repo: storage keeps one copy.
    status, _, _ = http_request("PUT", actions["upload"]["href"], body=data)
    assert status == 200
    assert held(hub, own, item["oid"])


def test_concurrent_uploads_of_one_object(hub: Hub):
    from concurrent.futures import ThreadPoolExecutor

    user = hub.make_user()
    repo = hub.make_repo(f"{user}/{unique('m')}")
    data, item = blob(2 * 1024 * 1024)
    status, _, answer = batch(hub, repo, "upload", [item], hub.make_token(user, "write"))
    assert status == 200
    href = answer["objects"][0]["actions"]["upload"]["href"]
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda _: http_request("PUT", href, body=data)[0], range(4)))
    assert statuses == [200] * 4
    assert stored_path(hub, item["oid"]).read_bytes() == data
    assert held(hub, repo, item["oid"])


def test_batch_validation_and_limits(hub: Hub):
    user = hub.make_user()
    repo = hub.make_repo(f"{user}/{unique('m')}")
    write = hub.make_token(user, "write")
    objects = [
        {"oid": "A" * 64, "size": 1},
        {"oid": "a" * 64, "size": -1},
        {"oid": "a" * 64, "size": 60 * 1000**3},
    ]
    status, _, answer = batch(hub, repo, "upload", objects, write)
    assert status == 200
    errors = [o["error"] for o in answer["objects"]]
    assert [e["code"] for e in errors] == [422, 422, 422]
    assert "Object too large" in errors[2]["message"]

    many = [{"oid": "a" * 64, "size": 1}] * 1001
    status, _, answer = batch(hub, repo, "upload", many, write)
    assert status == 413
    assert "limit is 1000" in answer["message"]

    url = f"{hub.repo_url(repo)}.git/info/lfs/objects/batch"
    status, _, body = http_request("POST", url, token=write, body=b"{not json")
    assert status == 400
    assert b"not valid JSON" in body


def test_transfer_urls_die_with_their_token_and_with_lost_access(hub: Hub):
    user = hub.make_user()
    repo = hub.make_repo(f"{user}/{unique('m')}", private=True)
    stored, stored_item = blob(2048)
    upload(hub, repo, hub.make_token(user, "write"), stored, stored_item)

    # Deleted after the batch: its upload URL stores nothing.
    doomed = hub.make_token(user, "write", name="doomed")
    data, item = blob(2048)
    status, _, answer = batch(hub, repo, "upload", [item], doomed)
    assert status == 200
    put = answer["objects"][0]["actions"]["upload"]["href"]
    assert doomed not in put
    hub.accounts.tokens.delete(user, "doomed")
    status, _, body = http_request("PUT", put, body=data)
    assert status == 401 and b"deleted, refreshed or has expired" in body
    assert not held(hub, repo, item["oid"]) and not stored_path(hub, item["oid"]).exists()

    # Refreshed after the batch: the old value's download URL is dead.
    rotated = hub.make_token(user, "read", name="rotated")
    status, _, answer = batch(hub, repo, "download", [stored_item], rotated)
    get = answer["objects"][0]["actions"]["download"]["href"]
    assert http_request("GET", get)[0] == 200
    hub.accounts.tokens.refresh(user, "rotated")
    assert http_request("GET", get)[0] == 403

    # Removed from the organization after the batch: refused, though the token lives.
    member = hub.make_user()
    org = hub.make_org(members={member: "read", user: "write"})
    org_repo = hub.make_repo(f"{org}/{unique('m')}", private=True, creator=user)
    upload(hub, org_repo, hub.make_token(user, "write"), stored, stored_item)
    status, _, answer = batch(
        hub, org_repo, "download", [stored_item], hub.make_token(member, "read")
    )
    get = answer["objects"][0]["actions"]["download"]["href"]
    assert http_request("GET", get)[0] == 200
    hub.accounts.users.remove_member(org, member)
    status, _, body = http_request("GET", get)
    assert status == 403 and b"Access changed" in body

    # An anonymous URL of a public repo dies when the repo turns private.
    public = hub.make_repo(f"{user}/{unique('m')}")
    upload(hub, public, hub.make_token(user, "write"), stored, stored_item)
    status, _, answer = batch(hub, public, "download", [stored_item])
    get = answer["objects"][0]["actions"]["download"]["href"]
    assert "token=" not in get and http_request("GET", get)[0] == 200
    hub.accounts.repos.update(public, private=True)
    assert http_request("GET", get)[0] == 403
