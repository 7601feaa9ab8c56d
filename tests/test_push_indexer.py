"""The bounded indexer gives the same index as the in-memory one, whichever path it takes.

Packs made by real ``git pack-objects`` (deltas, delta chains, thin packs) are received
once with the default thresholds and once with thresholds so small that every blob is
streamed and every delta base waits in a file; both indexes must be byte-identical,
``git verify-pack`` and ``git fsck`` must pass, and no spilled base may be left. A thin
pack must also give exactly the pack and index of dulwich's own ``add_thin_pack`` (which
holds every base whole), whether its bases are loose in the repository, stored whole
in its pack, or stored there as deltas.
"""

from __future__ import annotations

import random
import subprocess
from io import BytesIO
from pathlib import Path

import pytest
from dulwich.repo import Repo

from hfgit.config import MiB
from hfgit.server.git import bases, indexer
from hfgit.server.git.checks import PackChecker
from hfgit.server.git.packs import Quarantine


def _git(*args: str, cwd: Path | None = None, input: bytes | None = None) -> bytes:
    env = {
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_CONFIG_GLOBAL": "/dev/null",
        "HOME": "/nonexistent",
        "PATH": "/usr/bin:/bin:/usr/local/bin",
        "GIT_AUTHOR_NAME": "T",
        "GIT_AUTHOR_EMAIL": "t@example.com",
        "GIT_COMMITTER_NAME": "T",
        "GIT_COMMITTER_EMAIL": "t@example.com",
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, input=input, env=env, check=True, capture_output=True
    ).stdout


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    """Five commits that each change a bit of a 300 KB file: a chain of deltas."""
    work = tmp_path_factory.mktemp("source")
    _git("init", "-q", "-b", "main", cwd=work)
    rng = random.Random(5)
    data = bytearray(rng.randbytes(300_000))
    for index in range(5):
        data[index * 50_000 : index * 50_000 + 100] = rng.randbytes(100)
        (work / "big.bin").write_bytes(bytes(data))
        (work / f"note{index}.txt").write_text(f"note {index}\n" * 50)
        _git("add", "-A", cwd=work)
        _git("commit", "-q", "-m", f"c{index}", cwd=work)
    return work


def _receive(repo_path: Path, pack: bytes, monkeypatch, small: bool) -> tuple[bytes, Path]:
    streamed: list[str] = []
    if small:
        monkeypatch.setattr(bases, "STEP", 1000)
        monkeypatch.setattr(indexer, "STREAM_BYTES", 4096)
        monkeypatch.setattr(indexer, "BASE_BUDGET", 8192)
        apply, whole = indexer.apply_delta_streaming, indexer.CheckingIndexer._stream_whole
        monkeypatch.setattr(
            indexer, "apply_delta_streaming", lambda *a: streamed.append("delta") or apply(*a)
        )
        monkeypatch.setattr(
            indexer.CheckingIndexer,
            "_stream_whole",
            lambda *a: streamed.append("whole") or whole(*a),
        )
    else:
        monkeypatch.setattr(bases, "STEP", MiB)
        monkeypatch.setattr(indexer, "STREAM_BYTES", 8 * MiB)
        monkeypatch.setattr(indexer, "BASE_BUDGET", 32 * MiB)
    with Repo(str(repo_path)) as repo:
        quarantine = Quarantine(repo)
        checker = PackChecker(repo.object_format, max_blob_bytes=10 * MiB)
        received = quarantine.receive(
            BytesIO(pack).read, None, checker, max_bytes=0, max_object_bytes=100 * MiB
        )
        checker.finish(received.get_raw)
        leftovers = [p.name for p in Path(quarantine.path).iterdir()]
        assert not [name for name in leftovers if name.startswith("tmp_base_")]
        index = Path(received._basename + ".idx").read_bytes()
        quarantine.migrate()
        quarantine.close()
    if small:  # both streaming paths ran, not only the in-memory ones
        assert "delta" in streamed
    return index, repo_path


def _bare(tmp_path: Path, name: str, fill_from: Path | None = None, rev: str = "") -> Path:
    path = tmp_path / name
    _git("init", "-q", "--bare", "-b", "main", str(path))
    if fill_from is not None:
        _git("push", "-q", str(path), f"{rev}:refs/heads/main", cwd=fill_from)
    return path


def test_full_pack_with_delta_chains(source, tmp_path, monkeypatch):
    pack = _git("pack-objects", "--stdout", "--revs", "-q", cwd=source, input=b"main\n")
    big, _ = _receive(_bare(tmp_path, "a.git"), pack, monkeypatch, small=False)
    path = _bare(tmp_path, "b.git")
    small, _ = _receive(path, pack, monkeypatch, small=True)
    assert small == big
    _git("--git-dir", str(path), "update-ref", "refs/heads/main", _rev(source, "main"))
    for idx in (path / "objects" / "pack").glob("*.idx"):
        _git("verify-pack", str(idx))
    _git("--git-dir", str(path), "fsck", "--strict", "--no-dangling")


def test_thin_pack_against_the_repository(source, tmp_path, monkeypatch):
    pack = _git(
        "pack-objects", "--stdout", "--revs", "--thin", "-q", cwd=source, input=b"main\n^main~3\n"
    )
    indexes = []
    for name, small in (("big.git", False), ("small.git", True)):
        path = _bare(tmp_path, name, fill_from=source, rev="main~3")
        index, _ = _receive(path, pack, monkeypatch, small=small)
        indexes.append(index)
        _git("--git-dir", str(path), "update-ref", "refs/heads/main", _rev(source, "main"))
        _git("--git-dir", str(path), "fsck", "--strict", "--no-dangling")
    assert indexes[0] == indexes[1]


def _dulwich_thin(repo_path: Path, pack: bytes) -> tuple[bytes, bytes]:
    """The ``.pack`` and ``.idx`` dulwich's in-memory ``add_thin_pack`` makes of ``pack``."""
    with Repo(str(repo_path)) as repo:
        received = repo.object_store.add_thin_pack(BytesIO(pack).read, None)
        basename = received._basename
        received.close()
    return Path(basename + ".pack").read_bytes(), Path(basename + ".idx").read_bytes()


def _packed_deltas(path: Path) -> int:
    """How many objects the repository's packs store as deltas."""
    count = 0
    for idx in (path / "objects" / "pack").glob("*.idx"):
        for line in _git("verify-pack", "-v", str(idx)).decode().splitlines():
            fields = line.split()
            count += len(fields) == 7 and fields[1] in ("blob", "tree", "commit")
    return count


@pytest.mark.parametrize("stored", ["loose", "packed", "deltas"])
def test_thin_pack_is_completed_as_dulwich_does(source, tmp_path, monkeypatch, stored):
    pack = _git(
        "pack-objects", "--stdout", "--revs", "--thin", "-q", cwd=source, input=b"main\n^main~2\n"
    )
    expected = {}
    for small in (False, True):
        path = _bare(tmp_path, f"{stored}-{small}.git", fill_from=source, rev="main~2")
        reference = _bare(tmp_path, f"{stored}-{small}-dulwich.git", fill_from=source, rev="main~2")
        if stored != "loose":
            depth = "--depth=50" if stored == "deltas" else "--depth=0"
            for repo in (path, reference):
                _git("--git-dir", str(repo), "repack", "-adfq", depth, "--window=10")
            assert bool(_packed_deltas(path)) == (stored == "deltas")
        expected = _dulwich_thin(reference, pack)
        index, _ = _receive(path, pack, monkeypatch, small=small)
        assert index == expected[1]
        (received,) = [
            p
            for p in (path / "objects" / "pack").glob("*.pack")
            if p.with_suffix(".idx").read_bytes() == index
        ]
        assert received.read_bytes() == expected[0]
        _git("--git-dir", str(path), "update-ref", "refs/heads/main", _rev(source, "main"))
        _git("--git-dir", str(path), "fsck", "--strict", "--no-dangling")


def test_every_object_of_the_repository_streams_as_get_raw_reads_it(source, tmp_path, monkeypatch):
    """Whole, OFS_DELTA chains (a repack) and REF_DELTA (a completed thin pack)."""
    monkeypatch.setattr(bases, "STEP", 1000)
    path = _bare(tmp_path, "all.git", fill_from=source, rev="main~3")
    _git("--git-dir", str(path), "repack", "-adfq", "--depth=50", "--window=10")
    assert _packed_deltas(path)
    pack = _git(
        "pack-objects", "--stdout", "--revs", "--thin", "-q", cwd=source, input=b"main\n^main~3\n"
    )
    _receive(path, pack, monkeypatch, small=True)
    spill = tmp_path / "spill"
    spill.mkdir()
    with Repo(str(path)) as repo:
        store = repo.object_store
        objects = bases.RepositoryObjects(store, str(spill))
        shas = list(store)
        assert len(shas) > 20
        for sha in shas:
            raw = bytes.fromhex(sha.decode())
            type_num, size, chunks = objects.stream(raw)
            data = b"".join(chunks)
            assert (type_num, data) == store.get_raw(raw)
            assert size == len(data)
        with pytest.raises(KeyError):
            objects.stream(b"\x01" * 20)
    assert not list(spill.iterdir())


def _rev(work: Path, rev: str) -> str:
    return _git("rev-parse", rev, cwd=work).decode().strip()
