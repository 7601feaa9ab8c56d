"""``hfgit lfs gc``: storage no repository references is reclaimed, nothing else."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from hfgit.names import RepoId
from hubtest import Hub, MakeHub, http_request, unique
from lfs_support import batch, blob, held, stored_path, upload


@pytest.fixture
def lfs_hub(make_hub: MakeHub) -> Hub:
    """A server of its own: gc looks at the whole data directory."""
    return make_hub(workers=1)


def age(path: Path, hours: float) -> None:
    then = time.time() - hours * 3600
    os.utime(path, (then, then))


def test_gc_removes_only_what_no_repository_holds(lfs_hub: Hub):
    hub = lfs_hub
    user = hub.make_user()
    doomed = hub.make_repo(f"{user}/{unique('doomed')}")
    keeper = hub.make_repo(f"{user}/{unique('keeper')}")
    token = hub.make_token(user, "write")
    shared, shared_item = blob(4096)
    only_doomed, only_doomed_item = blob(8192)
    upload(hub, doomed, token, shared, shared_item)
    upload(hub, keeper, token, shared, shared_item)
    upload(hub, doomed, token, only_doomed, only_doomed_item)
    for item in (shared_item, only_doomed_item):
        age(stored_path(hub, item["oid"]), 48)
    leftover = hub.data_dir / "lfs" / "tmp" / "crashed-upload"
    leftover.write_bytes(b"partial")
    age(leftover, 48)

    hub.accounts.repos.delete(doomed)
    dry = hub.cli("lfs", "gc", "--dry-run")
    assert "would remove 1 (0.0 MiB)" in dry.stderr
    assert stored_path(hub, only_doomed_item["oid"]).exists() and leftover.exists()

    result = hub.cli("lfs", "gc")
    assert "examined 2 objects, removed 1" in result.stderr
    assert not stored_path(hub, only_doomed_item["oid"]).exists()
    assert not leftover.exists()
    assert stored_path(hub, shared_item["oid"]).exists()
    assert held(hub, keeper, shared_item["oid"])
    status, _, answer = batch(hub, keeper, "download", [shared_item], token)
    assert status == 200
    href = answer["objects"][0]["actions"]["download"]["href"]
    assert http_request("GET", href)[2] == shared


def test_gc_keeps_recent_objects_and_objects_reuploaded_since(lfs_hub: Hub):
    hub = lfs_hub
    user = hub.make_user()
    token = hub.make_token(user, "write")
    first = hub.make_repo(f"{user}/{unique('a')}")
    data, item = blob(4096)
    upload(hub, first, token, data, item)
    hub.accounts.repos.delete(first)

    # Younger than the grace period: an upload may still be writing its row.
    result = hub.cli("lfs", "gc")
    assert "removed 0" in result.stderr and "kept 1 younger than 24 hours" in result.stderr
    assert stored_path(hub, item["oid"]).exists()

    # Old and unreferenced, but uploaded again to a new repository: kept.
    age(stored_path(hub, item["oid"]), 48)
    second = hub.make_repo(f"{user}/{unique('b')}")
    upload(hub, second, token, data, item)
    hub.cli("lfs", "gc", "--grace-hours", "0")
    assert stored_path(hub, item["oid"]).exists()
    assert held(hub, second, item["oid"])


def test_gc_refuses_a_negative_grace(lfs_hub: Hub):
    result = lfs_hub.cli("lfs", "gc", "--grace-hours", "-1", check=False)
    assert result.returncode == 1 and "cannot be negative" in result.stderr


def test_a_repo_recreated_under_a_collected_name_starts_empty(lfs_hub: Hub):
    hub = lfs_hub
    user = hub.make_user()
    token = hub.make_token(user, "write")
    name = f"{user}/{unique('m')}"
    data, item = blob(2048)
    upload(hub, hub.make_repo(name), token, data, item)
    hub.accounts.repos.delete(RepoId.parse(name))
    age(stored_path(hub, item["oid"]), 48)
    hub.cli("lfs", "gc")
    assert not stored_path(hub, item["oid"]).exists()
    again = hub.make_repo(name)
    status, _, answer = batch(hub, again, "download", [item], token)
    assert status == 200 and answer["objects"][0]["error"]["code"] == 404
