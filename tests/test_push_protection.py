"""Push protection: a push whose new files hold a live token of this server is refused.

Real git pushes to the real server. The refusal names the commit and the file and says
to refresh the token; the token itself is in neither git's output nor the server log.
Token-shaped strings that are not live (deleted, refreshed, made up, bad checksum) pass.
"""

from __future__ import annotations

import os
import random
import string
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

from hfgit import tokens
from hfgit.leaks import TokenScanner, candidate_tokens
from hubtest import Git, Hub, unique


@dataclass
class Target:
    hub: Hub
    git: Git
    url: str
    pusher: str
    owner: str
    work: Path

    def push(self, check: bool = True):
        return self.git.run(
            "push", "-q", self.url, "main", cwd=self.work, token=self.pusher, check=check
        )

    def remote_main(self) -> str:
        out = self.git.run("ls-remote", self.url, "refs/heads/main", token=self.pusher).stdout
        return out.split()[0] if out else ""


@pytest.fixture
def target(hub: Hub, git: Git, tmp_path: Path) -> Target:
    owner = hub.make_user()
    repo = hub.make_repo(f"{owner}/{unique('m')}")
    pusher = hub.make_token(owner, "write")
    work = git.init_worktree(tmp_path / "w", {"README.md": "seed\n"})
    url = hub.repo_url(repo)
    target = Target(hub, git, url, pusher, owner, work)
    target.push()
    return target


def _live(hub: Hub, user: str) -> tuple[str, str]:
    name = unique("leak")
    return hub.make_token(user, "read", name=name), name


def _refused(target: Target, token: str, commit: str, path: str) -> None:
    before = target.remote_main()
    result = target.push(check=False)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert "live access token" in output
    assert commit[:12] in output and commit in output
    assert path in output
    assert "refresh" in output
    assert token not in output
    assert token not in Path(target.hub.log).read_text(errors="replace")
    assert target.remote_main() == before


def test_live_token_in_a_file_is_refused(target: Target):
    token, name = _live(target.hub, target.owner)
    commit = target.git.commit(target.work, {"config.py": f'TOKEN = "{token}"\n'})
    _refused(target, token, commit, "config.py")
    # The owner learns which token to refresh by its name.
    output = target.push(check=False).stderr
    assert f"token {name!r} of {target.owner}" in output


def test_live_token_in_a_nested_path_is_refused(target: Target):
    token, _ = _live(target.hub, target.owner)
    commit = target.git.commit(target.work, {"deep/er/still/.env": f"HF_TOKEN={token}\n"})
    _refused(target, token, commit, "deep/er/still/.env")


def test_live_token_of_another_user_is_refused(target: Target):
    token, _ = _live(target.hub, target.hub.make_user())
    commit = target.git.commit(target.work, {"notes.md": f"try {token}\n"})
    _refused(target, token, commit, "notes.md")


def test_live_token_in_a_deltad_version_of_a_file_is_refused(target: Target):
    rng = random.Random(7)
    lines = [f"line {i} {rng.getrandbits(256):064x}\n" for i in range(4000)]
    old = target.git.commit(target.work, {"data.txt": "".join(lines)})
    target.push()
    token, _ = _live(target.hub, target.owner)
    lines[2000] = f"token = {token}\n"
    commit = target.git.commit(target.work, {"data.txt": "".join(lines)})
    # What git sends: the new version as a delta against the one the server has.
    pack = subprocess.run(
        ["git", "pack-objects", "--revs", "--thin", "--stdout", "-q"],
        input=f"{commit}\n^{old}\n".encode(),
        cwd=target.work,
        capture_output=True,
        env=target.git.env,
        check=True,
    ).stdout
    assert len(pack) < 4096 < len("".join(lines)) // 10
    _refused(target, token, commit, "data.txt")


@pytest.mark.parametrize("boundary", [64 * 1024, 1024 * 1024], ids=["64KiB", "1MiB-streamed"])
def test_live_token_across_a_chunk_boundary_is_refused(target: Target, boundary: int):
    """The token straddles ``boundary``. A 9 MiB blob is inflated as a stream in 1 MiB
    steps; of a run of one letter, each step is exactly 1 MiB, so the scan sees the
    token in two chunks."""
    token, _ = _live(target.hub, target.owner)
    size = 9 * 1024 * 1024 if boundary == 1024 * 1024 else 256 * 1024
    at = boundary - len(token) // 2
    content = b"a" * at + token.encode() + b"a" * (size - at - len(token))
    commit = target.git.commit(target.work, {"blob.bin": content})
    _refused(target, token, commit, "blob.bin")


def test_live_token_completed_by_a_delta_is_refused(target: Target):
    """The old version holds the token's first half, so the delta that makes the new one
    copies that half and inserts the rest: the scan reads the object the delta makes,
    never the delta's own bytes."""
    token, _ = _live(target.hub, target.owner)
    rng = random.Random(3)
    head = "".join(f"{rng.getrandbits(128):032x}\n" for _ in range(200))
    old = target.git.commit(target.work, {"split.txt": head + token[:20] + "\n"})
    target.push()
    commit = target.git.commit(target.work, {"split.txt": head + token + "\n"})
    assert old != commit
    _refused(target, token, commit, "split.txt")


def test_deleted_or_refreshed_tokens_pass(target: Target):
    hub = target.hub
    deleted, deleted_name = _live(hub, target.owner)
    hub.accounts.tokens.delete(target.owner, deleted_name)
    refreshed, refreshed_name = _live(hub, target.owner)
    new_value = hub.accounts.tokens.refresh(target.owner, refreshed_name)
    commit = target.git.commit(
        target.work, {"old.txt": f"{deleted}\n{refreshed}\n"}, message="old tokens"
    )
    target.push()
    assert target.remote_main() == commit
    # The refreshed token's new value is live again.
    commit = target.git.commit(target.work, {"new.txt": new_value})
    _refused(target, new_value, commit, "new.txt")


def test_made_up_and_lookalike_tokens_pass(target: Target):
    made_up = tokens.generate()  # right shape and checksum, never stored
    assert tokens.is_well_formed(made_up)
    lookalike = "hf_" + "".join(random.choice(string.ascii_letters) for _ in range(34))
    lookalike = lookalike if not tokens.is_well_formed(lookalike) else lookalike[:-1] + "Q"
    commit = target.git.commit(target.work, {"ex.md": f"e.g. {made_up} or {lookalike}\n"})
    target.push()
    assert target.remote_main() == commit


# The scanner itself: pure code, table-tested.


def test_scanner_finds_a_token_split_at_every_position():
    token = tokens.generate()
    data = os.urandom(100).replace(b"hf_", b"xx_") + token.encode() + b"!" * 50
    for split in range(len(data) + 1):
        assert candidate_tokens([data[:split], data[split:]]) == {token}, split
    pieces = [data[i : i + 3] for i in range(0, len(data), 3)]
    assert candidate_tokens(pieces) == {token}


def test_scanner_ignores_bad_checksums_and_keeps_nothing_else():
    token = tokens.generate()
    bad = token[:-1] + ("A" if token[-1] != "A" else "B")
    scanner = TokenScanner()
    scanner.feed(f"{bad} hf_short {token[:-2]}".encode())
    assert scanner.found == set()
    scanner.feed(f" {token}".encode())
    assert scanner.found == {token}
