"""The bounded indexer gives the same index as the in-memory one, whichever path it takes.

Packs made by real ``git pack-objects`` (deltas, delta chains, thin packs) are received
once with the default thresholds and once with thresholds so small that every blob is
streamed and every delta base waits in a file; both indexes must be byte-identical,
``git verify-pack`` and ``git fsck`` must pass, and no spilled base may be left.
"""

from __future__ import annotations

import random
import subprocess
from io import BytesIO
from pathlib import Path

import pytest
from dulwich.repo import Repo

from hfgit.config import MiB
from hfgit.server.git import indexer
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
        monkeypatch.setattr(indexer, "STREAM_BYTES", 4096)
        monkeypatch.setattr(indexer, "BASE_BUDGET", 8192)
        apply, whole = indexer._apply_streaming, indexer.CheckingIndexer._stream_whole
        monkeypatch.setattr(
            indexer, "_apply_streaming", lambda *a: streamed.append("delta") or apply(*a)
        )
        monkeypatch.setattr(
            indexer.CheckingIndexer,
            "_stream_whole",
            lambda *a: streamed.append("whole") or whole(*a),
        )
    else:
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


def _rev(work: Path, rev: str) -> str:
    return _git("rev-parse", rev, cwd=work).decode().strip()
