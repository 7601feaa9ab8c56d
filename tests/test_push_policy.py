"""The default branch stays, ref names stay valid, and the limits hold."""

from __future__ import annotations

import hashlib
import os
import struct
import zlib
from hashlib import sha1
from io import BytesIO

import pytest
from dulwich.pack import REF_DELTA, PackStreamReader

from _wire import ZERO, PushTarget, progress_text, report_status, snapshot
from hfgit.config import MiB
from hubtest import Git, Hub, running_hub, worker_memory


def test_default_branch_cannot_be_deleted(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    work = tmp_path / "work"
    git.run("clone", "-q", target.url, str(work), token=target.token)

    result = git.run("push", "origin", ":main", cwd=work, token=target.token, check=False)

    assert result.returncode != 0
    assert "deletion of the current branch prohibited" in result.stderr
    assert target.refs()["refs/heads/main"] == target.main


def test_other_branches_can_be_deleted(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    work = tmp_path / "work"
    git.run("clone", "-q", target.url, str(work), token=target.token)
    git.run("push", "-q", "origin", "main:topic", cwd=work, token=target.token)
    git.run("push", "-q", "origin", ":topic", cwd=work, token=target.token)
    assert "refs/heads/topic" not in target.refs()


@pytest.mark.parametrize("ref", ["HEAD", "refs/heads/a..b", "refs/heads/x.lock", "main"])
def test_invalid_ref_names_are_refused(hub, git, tmp_path, ref):
    target = PushTarget.create(hub, git, tmp_path)
    empty_pack = target.plumbing(git, tmp_path).pack([])
    before = snapshot(target.path)
    answer = target.push([(ZERO, target.main, ref)], empty_pack)
    assert report_status(answer.body)[ref] == "ng funny refname"
    assert snapshot(target.path) == before


def test_file_over_the_limit_is_refused_with_a_pointer_to_lfs(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    work = tmp_path / "work"
    git.run("clone", "-q", target.url, str(work), token=target.token)
    git.commit(work, {"weights/model.bin": os.urandom(10 * 1024 * 1024 + 1)})
    before = snapshot(target.path)

    result = git.run("push", "origin", "main", cwd=work, token=target.token, check=False)

    assert result.returncode != 0
    assert "git lfs track" in result.stderr
    assert "weights/model.bin" in result.stderr
    assert snapshot(target.path) == before


@pytest.fixture(scope="module")
def strict_hub(tmp_path_factory):
    """A server with small limits, to reach them cheaply."""
    data_dir = tmp_path_factory.mktemp("strict") / "data"
    env = {
        "HFGIT_MAX_REF_UPDATES": "3",
        "HFGIT_MAX_PACK_BYTES": str(64 * 1024),
        "HFGIT_MAX_BLOB_BYTES": "1000",
    }
    with running_hub(data_dir, env=env) as hub:
        yield hub


def test_too_many_ref_updates_are_refused(strict_hub, git, tmp_path):
    target = PushTarget.create(strict_hub, git, tmp_path)
    work = tmp_path / "work"
    git.run("clone", "-q", target.url, str(work), token=target.token)
    for index in range(4):
        git.run("branch", f"b{index}", cwd=work)
    before = snapshot(target.path)

    result = git.run(
        "push", "origin", "b0", "b1", "b2", "b3", cwd=work, token=target.token, check=False
    )

    assert result.returncode != 0
    assert "too many ref updates" in result.stderr
    assert snapshot(target.path) == before


def test_pack_over_the_limit_is_refused(strict_hub, git, tmp_path):
    target = PushTarget.create(strict_hub, git, tmp_path)
    work = tmp_path / "work"
    git.run("clone", "-q", target.url, str(work), token=target.token)
    git.commit(work, {f"f{i}.txt": os.urandom(900).hex()[:900] for i in range(150)})
    before = snapshot(target.path)

    result = git.run("push", "origin", "main", cwd=work, token=target.token, check=False)

    assert result.returncode != 0
    assert "limit" in result.stderr
    assert snapshot(target.path) == before


def test_blob_limit_is_configurable(strict_hub, git, tmp_path):
    target = PushTarget.create(strict_hub, git, tmp_path)
    work = tmp_path / "work"
    git.run("clone", "-q", target.url, str(work), token=target.token)
    git.commit(work, {"small.txt": "x" * 999})
    git.run("push", "-q", "origin", "main", cwd=work, token=target.token)
    git.commit(work, {"big.txt": os.urandom(1001)})
    result = git.run("push", "origin", "main", cwd=work, token=target.token, check=False)
    assert result.returncode != 0
    assert "big.txt" in result.stderr


def test_file_over_the_limit_stored_as_a_delta_is_refused(strict_hub, git, tmp_path):
    target = PushTarget.create(strict_hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    text = "".join(f"line {index} of a file that deltas well\n" for index in range(25)).encode()
    assert len(text) < 1000
    blob = scratch.blob(text)
    tree = scratch.tree([("100644", blob, "data.txt")])
    base = scratch.commit(tree, (target.main,))
    answer = target.push([(target.main, base, "refs/heads/main")], scratch.pack([base, tree, blob]))
    assert report_status(answer.body)["refs/heads/main"] == "ok"
    scratch.run("update-ref", "refs/heads/main", base)
    grown = scratch.tree([("100644", scratch.blob(text + text[:200]), "data.txt")])
    commit = scratch.commit(grown, (base,))
    # As git push sends it: the grown file is a small delta against the one on the server.
    pack = scratch.run(
        "pack-objects", "--thin", "--stdout", "--revs", input=f"{commit}\n^{base}\n".encode()
    )
    stored = {
        unpacked.pack_type_num
        for unpacked in PackStreamReader(sha1, BytesIO(pack).read).read_objects()
    }
    assert REF_DELTA in stored and len(pack) < 1000
    before = snapshot(target.path)

    answer = target.push([(base, commit, "refs/heads/main")], pack)

    assert report_status(answer.body)["refs/heads/main"].startswith("ng file too large")
    assert "data.txt" in progress_text(answer.body)
    assert snapshot(target.path) == before


# --- one object's inflated size: zlib and delta bombs never get inflated ---------------

GiB = 1024 * MiB
#: The per-object limit of ``bomb_hub`` (set through the environment, to test that too).
OBJECT_LIMIT = 64 * MiB


@pytest.fixture(scope="module")
def bomb_hub(tmp_path_factory):
    """A fresh server of one worker, so that worker's peak memory is the bombs' doing."""
    data_dir = tmp_path_factory.mktemp("bombs") / "data"
    env = {"HFGIT_MAX_OBJECT_BYTES": str(OBJECT_LIMIT)}
    with running_hub(data_dir, workers=1, env=env) as hub:
        yield hub


def worker_peak_rss(hub: Hub) -> int:
    """The largest peak resident size (``VmHWM``, bytes) among the server's workers."""
    peaks = worker_memory(hub, "VmHWM")
    assert peaks, "no worker process found"
    return max(peaks)


def pack_entry(type_num: int, size: int, stream: bytes, base: bytes = b"") -> bytes:
    """One pack entry as written, declaring ``size`` whatever ``stream`` inflates to."""
    header = bytearray()
    byte = (type_num << 4) | (size & 0x0F)
    size >>= 4
    while size:
        header.append(byte | 0x80)
        byte = size & 0x7F
        size >>= 7
    header.append(byte)
    return bytes(header) + base + stream


def ofs_base(distance: int) -> bytes:
    """An OFS_DELTA's distance back to its base, in git's encoding."""
    out = [distance & 0x7F]
    distance >>= 7
    while distance:
        distance -= 1
        out.insert(0, 0x80 | (distance & 0x7F))
        distance >>= 7
    return bytes(out)


def raw_pack(entries: list[bytes]) -> bytes:
    body = b"PACK" + struct.pack(">LL", 2, len(entries)) + b"".join(entries)
    return body + hashlib.sha1(body, usedforsecurity=False).digest()


def varint(value: int) -> bytes:
    """A delta header size (little-endian groups of 7 bits)."""
    out = bytearray()
    while value >= 0x80:
        out.append(0x80 | (value & 0x7F))
        value >>= 7
    out.append(value)
    return bytes(out)


def commit_and_tree(scratch, target, blob: str, name: str) -> tuple[str, list[bytes]]:
    """A commit on ``main`` whose tree holds ``blob`` as ``name``; their pack entries."""
    tree = scratch.tree([("100644", blob, name)])
    commit = scratch.commit(tree, (target.main,))
    entries = []
    for kind, type_num, sha in (("commit", 1, commit), ("tree", 2, tree)):
        raw = scratch.run("cat-file", kind, sha)
        entries.append(pack_entry(type_num, len(raw), zlib.compress(raw)))
    return commit, entries


def assert_refused_in_protocol(target, hub, answer, before, peak_before, needle: str) -> None:
    status = report_status(answer.body)
    assert answer.status == 200
    assert needle in status["unpack"]
    assert status["refs/heads/main"] == "ng unpacker error"
    assert snapshot(target.path) == before
    peak = worker_peak_rss(hub)
    assert peak < 256 * MiB, peak  # the bomb is 1 GiB inflated
    assert peak - peak_before < 32 * MiB, (peak_before, peak)
    # ...and the server keeps serving: an ordinary push lands.
    work = target.path.parent / f"after-{target.rid.name}"
    git_push_ok(target, work)


def git_push_ok(target, work) -> None:
    git = Git(work.parent / f"{work.name}-home")
    git.run("clone", "-q", target.url, str(work), token=target.token)
    git.commit(work, {"after.txt": "still serving\n"})
    git.run("push", "-q", "origin", "main", cwd=work, token=target.token)


def test_zlib_bomb_blob_is_refused_before_it_is_inflated(bomb_hub, git, tmp_path):
    target = PushTarget.create(bomb_hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    zeros = tmp_path / "zeros.bin"
    with zeros.open("wb") as f:
        f.truncate(GiB)  # sparse: no disk used
    blob = scratch.run("hash-object", "-w", str(zeros)).decode().strip()
    zeros.unlink()
    tree = scratch.tree([("100644", blob, "zeros.bin")])
    commit = scratch.commit(tree, (target.main,))
    pack = scratch.pack([commit, tree, blob])  # real git: 1 GiB of zeros in about 1 MB
    assert len(pack) < 2 * MiB
    before = snapshot(target.path)
    peak_before = worker_peak_rss(bomb_hub)

    answer = target.push([(target.main, commit, "refs/heads/main")], pack)

    assert_refused_in_protocol(
        target, bomb_hub, answer, before, peak_before, "1024 MiB, over the 64 MiB limit"
    )


def test_delta_bomb_is_refused_before_it_is_applied(bomb_hub, git, tmp_path):
    """A 1 KiB base and a delta copying it a million times: 1 GiB from a few KB."""
    target = PushTarget.create(bomb_hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    base = b"a" * 1024
    copies = GiB // len(base)
    delta = varint(len(base)) + varint(GiB) + b"\xa0\x04" * copies  # copy 0x400 from 0
    result = hashlib.sha1(b"blob %d\0" % GiB, usedforsecurity=False)
    for _ in range(64):
        result.update(base * (copies // 64))
    commit, entries = commit_and_tree(scratch, target, result.hexdigest(), "bomb.bin")
    base_entry = pack_entry(3, len(base), zlib.compress(base))
    stream = zlib.compress(delta, 9)
    delta_entry = pack_entry(6, len(delta), stream, ofs_base(len(base_entry)))
    pack = raw_pack([*entries, base_entry, delta_entry])
    assert len(pack) < 64 * 1024
    before = snapshot(target.path)
    peak_before = worker_peak_rss(bomb_hub)

    answer = target.push([(target.main, commit, "refs/heads/main")], pack)

    assert_refused_in_protocol(
        target, bomb_hub, answer, before, peak_before, "1024 MiB, over the 64 MiB limit"
    )


def test_stream_inflating_past_its_declared_size_is_refused(bomb_hub, git, tmp_path):
    """The header says 1000 bytes; the zlib stream holds 1 GiB of zeros."""
    target = PushTarget.create(bomb_hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    declared = bytes(1000)
    blob = scratch.blob(declared)
    commit, entries = commit_and_tree(scratch, target, blob, "small.bin")
    compressor = zlib.compressobj(9)
    chunk = bytes(16 * MiB)
    stream = b"".join(compressor.compress(chunk) for _ in range(GiB // len(chunk)))
    stream += compressor.flush()
    pack = raw_pack([*entries, pack_entry(3, len(declared), stream)])
    before = snapshot(target.path)
    peak_before = worker_peak_rss(bomb_hub)

    answer = target.push([(target.main, commit, "refs/heads/main")], pack)

    assert_refused_in_protocol(
        target, bomb_hub, answer, before, peak_before, "inflates to more than its declared 1000"
    )
