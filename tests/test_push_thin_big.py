"""A small change to a big file already on the server lands in flat memory.

``git push`` sends the new version as a delta against the server's copy (a thin pack).
The base is read from the repository's pack in steps into a file of the quarantine,
the delta is applied as a stream against it, and the pack is completed with the base
deflated in steps: the worker's peak grows by far less than the file's size.
"""

from __future__ import annotations

import random
import subprocess

import pytest

from _wire import PushTarget
from hfgit.config import MiB
from hubtest import running_hub, worker_memory

#: Over the indexer's 32 MiB budget for bases held in memory, so the base is spilled.
BIG = 48 * MiB


@pytest.fixture(scope="module")
def big_hub(tmp_path_factory):
    """One worker (its peak is this push's doing) that accepts files of ``BIG`` bytes."""
    data_dir = tmp_path_factory.mktemp("thin") / "data"
    with running_hub(data_dir, workers=1, env={"HFGIT_MAX_BLOB_BYTES": str(64 * MiB)}) as hub:
        yield hub


def test_one_mib_change_to_a_big_file_lands_in_flat_memory(big_hub, git, tmp_path):
    target = PushTarget.create(big_hub, git, tmp_path)
    work = tmp_path / "work"
    git.run("clone", "-q", target.url, str(work), token=target.token)
    rng = random.Random(3)
    data = bytearray(rng.randbytes(BIG))
    git.commit(work, {"big.bin": bytes(data)})
    git.run("push", "-q", "origin", "main", cwd=work, token=target.token)
    data[20 * MiB : 21 * MiB] = rng.randbytes(MiB)
    tip = git.commit(work, {"big.bin": bytes(data)}, "change 1 MiB")
    (idle,) = worker_memory(big_hub, "VmRSS")

    git.run("push", "-q", "origin", "main", cwd=work, token=target.token)

    (peak,) = worker_memory(big_hub, "VmHWM")
    assert peak - idle < BIG // 2, f"the worker grew by {(peak - idle) / MiB:.0f} MiB"
    assert target.refs()["refs/heads/main"] == tip
    subprocess.run(
        ["git", "--git-dir", str(target.path), "fsck", "--strict", "--no-dangling"],
        check=True,
        capture_output=True,
    )
    clone = tmp_path / "clone"
    git.run("clone", "-q", target.url, str(clone), token=target.token)
    assert (clone / "big.bin").read_bytes() == bytes(data)
    assert not list(target.path.glob("objects/incoming-*"))
