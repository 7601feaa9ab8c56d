"""The helper's secret file: 0600 in a 0700 directory, atomic, locked, no symlinks, and a
damaged file is reported and left exactly as it was."""

from __future__ import annotations

import os
import stat
import subprocess

import pytest

ENTRY = "protocol=https\nhost=example.com\nusername={u}\npassword=pass-{u}\n"


def test_file_and_directory_modes(cred):
    old = os.umask(0)  # the modes must not depend on a careful umask
    try:
        cred.approve(ENTRY.format(u="alice"))
    finally:
        os.umask(old)
    assert stat.S_IMODE(cred.store_file.stat().st_mode) == 0o600
    assert stat.S_IMODE(cred.store_file.parent.stat().st_mode) == 0o700
    leftovers = [p.name for p in cred.store_file.parent.iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []


def test_hfgit_config_dir_overrides_location(cred, tmp_path):
    target = tmp_path / "elsewhere"
    cred.approve(ENTRY.format(u="alice"), env={"HFGIT_CONFIG_DIR": str(target)})
    assert (target / "credentials").exists()
    assert not cred.store_file.exists()


def test_concurrent_stores_lose_nothing(cred):
    """Many git processes storing at once: every entry survives (the lock serializes them)."""
    users = [f"user{i}" for i in range(16)]
    env = {**cred.env}
    procs = [
        subprocess.Popen(
            ["git", "-c", "credential.helper=hf", "credential", "approve"],
            stdin=subprocess.PIPE,
            env=env,
            cwd=cred.root,
        )
        for _ in users
    ]
    for proc, user in zip(procs, users, strict=True):
        proc.stdin.write(ENTRY.format(u=user).encode())
        proc.stdin.close()
    assert [proc.wait(timeout=60) for proc in procs] == [0] * len(users)
    for user in users:
        out = cred.fill(f"protocol=https\nhost=example.com\nusername={user}\n")
        assert out["password"] == f"pass-{user}"


def test_symlink_at_store_path_refused(cred, tmp_path):
    target = tmp_path / "target"
    target.write_text("do not touch\n")
    cred.store_file.parent.mkdir(parents=True)
    cred.store_file.symlink_to(target)
    result = cred.helper("store", ENTRY.format(u="alice"))
    assert result.returncode != 0
    assert b"symbolic link" in result.stderr
    assert target.read_text() == "do not touch\n"
    assert cred.store_file.is_symlink()
    # get does not follow it either, and still works for other sources
    out = cred.helper("get", "protocol=https\nhost=example.com\n")
    assert out.stdout == b"" and b"symbolic link" in out.stderr


@pytest.mark.parametrize(
    "content",
    [
        b'{"json": true}\n',
        b"hfgit-credentials 1\nbogus\tx=1\n",
        b"hfgit-credentials 1\nentry\tno-equals-sign\n",
        b"hfgit-credentials 1\n\xff\xfe\n",
    ],
)
def test_damaged_store_is_reported_and_kept(cred, content):
    cred.store_file.parent.mkdir(parents=True)
    cred.store_file.write_bytes(content)
    for action in ("store", "erase"):
        result = cred.helper(action, ENTRY.format(u="alice"))
        assert result.returncode == 1
        assert str(cred.store_file).encode() in result.stderr
        assert b"nothing was changed" in result.stderr
        assert cred.store_file.read_bytes() == content


def test_damaged_store_does_not_block_hub_token(cred):
    from credhelpers import new_token, same_secret

    cred.store_file.parent.mkdir(parents=True)
    cred.store_file.write_bytes(b"garbage\n")
    token = new_token()
    out = cred.helper("get", "protocol=https\nhost=huggingface.co\n", env={"HF_TOKEN": token})
    assert out.returncode == 0 and b"not an hfgit credential file" in out.stderr
    answer = dict(line.split("=", 1) for line in out.stdout.decode().splitlines())
    same_secret(answer.get("password"), token)


def test_store_without_username_or_password_stores_nothing(cred):
    cred.helper("store", "protocol=https\nhost=example.com\npassword=p\n")
    cred.helper("store", "protocol=https\nhost=example.com\nusername=u\n")
    assert not cred.store_file.exists()
