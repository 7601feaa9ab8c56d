"""The admin command line: outputs, errors, and that bad input loses no data."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from hfgit import tokens
from hfgit.names import RepoId
from hubtest import (
    Git,
    Hub,
    cli_command,
    free_port,
    run_cli,
    spawn,
    stop_server,
    unique,
    wait_healthy,
)

TOKEN_RE = re.compile(r"hf_[A-Za-z]{34}")


@pytest.fixture
def user(hub: Hub) -> str:
    return hub.make_user()


def test_token_create_prints_the_token_alone_on_stdout(hub, user):
    result = hub.cli("token", "create", user, "--name", "laptop", "--role", "write")
    assert TOKEN_RE.fullmatch(result.stdout.strip())
    assert tokens.is_well_formed(result.stdout.strip())
    assert result.stdout.count("\n") == 1
    assert "shown only once" in result.stderr
    assert not TOKEN_RE.search(result.stderr)


def test_token_list_shows_no_secret_and_json_is_complete(hub, user):
    secret = hub.cli(
        "token",
        "create",
        user,
        "--name",
        "ft",
        "--role",
        "fineGrained",
        "--scope",
        f"user:{user}=repo.content.read,repo.write",
        "--can-read-gated",
        "--expires-in",
        "30",
    ).stdout.strip()
    listing = hub.cli("token", "list", user)
    assert "ft" in listing.stdout and f"...{secret[-4:]}" in listing.stdout
    assert secret not in listing.stdout
    rows = json.loads(hub.cli("token", "list", user, "--json").stdout)
    assert rows[0]["name"] == "ft" and rows[0]["role"] == "fineGrained"
    assert rows[0]["scopes"] == [
        {"type": "user", "name": user, "permissions": ["repo.content.read", "repo.write"]}
    ]
    assert rows[0]["canReadGatedRepos"] is True
    assert rows[0]["expiresAt"] - rows[0]["createdAt"] == pytest.approx(30 * 86400, abs=5)
    assert not TOKEN_RE.search(json.dumps(rows))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "owner"], "invalid choice"),
        (["--role", "read", "--scope", "user:x=repo.write"], "only to fineGrained"),
        (["--role", "fineGrained"], "at least one scope"),
        (["--role", "fineGrained", "--scope", "model:a/b"], "KIND:ENTITY=PERM"),
        (["--role", "fineGrained", "--scope", "model:a/b=repo.admin"], "Invalid permissions"),
        (["--role", "fineGrained", "--scope", "planet:a=repo.write"], "Invalid scope kind"),
        (["--role", "fineGrained", "--scope", "user:somebody-else=repo.write"], "own namespace"),
        (["--role", "fineGrained", "--scope", "model:nobody/nothing=repo.write"], "No model"),
        (["--role", "write", "--expires-in", "-1"], "positive"),
    ],
)
def test_token_create_refuses_bad_input_without_creating_anything(hub, user, args, message):
    result = hub.cli("token", "create", user, "--name", "bad", *args, check=False)
    assert result.returncode != 0
    assert message in result.stderr
    assert result.stdout == ""
    assert hub.accounts.tokens.list(user) == []


def test_duplicate_token_name_is_refused_and_first_token_still_works(hub, git, user):
    hub.make_repo(f"{user}/m", private=True)
    first = hub.cli("token", "create", user, "--name", "app", "--role", "read").stdout.strip()
    again = hub.cli("token", "create", user, "--name", "app", "--role", "write", check=False)
    assert again.returncode == 1 and "already has a token named 'app'" in again.stderr
    git.run("ls-remote", hub.repo_url(f"{user}/m"), token=first)


def test_refresh_and_delete_of_unknown_token(hub, user):
    for action in ("refresh", "delete"):
        result = hub.cli("token", action, user, "ghost", check=False)
        assert result.returncode == 1 and "No token named 'ghost'" in result.stderr


def test_users_orgs_and_names(hub):
    name = unique("cli")
    hub.cli("user", "add", name)
    taken = hub.cli("org", "add", name.upper(), check=False)
    assert taken.returncode == 1 and "already taken" in taken.stderr
    reserved = hub.cli("user", "add", "settings", check=False)
    assert reserved.returncode == 1 and "reserved" in reserved.stderr
    bad = hub.cli("user", "add", "a..b", check=False)
    assert bad.returncode == 1 and "Invalid" in bad.stderr
    org = unique("org")
    hub.cli("org", "add", org)
    hub.cli("org", "member", org, name, "--role", "contributor")
    assert [(row.name, role) for row, role in hub.accounts.users.memberships_of(name)] == [
        (org, "contributor")
    ]
    hub.cli("org", "member", org, name, "--role", "admin")
    assert [role for _, role in hub.accounts.users.memberships_of(name)] == ["admin"]
    hub.cli("org", "member", org, name, "--remove")
    assert hub.accounts.users.memberships_of(name) == []


def test_password_from_stdin_is_argon2_hashed(hub):
    name = unique("pw")
    hub.cli("user", "add", name, "--password-stdin", input="s3cret-password\n")
    assert hub.accounts.users.verify_password(name, "s3cret-password") == name
    assert hub.accounts.users.verify_password(name, "wrong-password") is None
    assert hub.accounts.users.get(name).password_hash.startswith("$argon2")
    short = hub.cli("user", "passwd", name, input="short\n", check=False)
    assert short.returncode == 1 and "at least 8" in short.stderr
    assert hub.accounts.users.verify_password(name, "s3cret-password") == name
    hub.cli("user", "passwd", name, input="another-password\n")
    assert hub.accounts.users.verify_password(name, "another-password") == name


def test_repo_lifecycle(hub, git, tmp_path, user):
    hub.cli("repo", "create", "--type", "dataset", f"{user}/data", "--private")
    dup = hub.cli("repo", "create", "--type", "dataset", f"{user}/DATA", check=False)
    assert dup.returncode == 1 and "already exists" in dup.stderr
    hub.cli("repo", "set", "--type", "dataset", f"{user}/data", "--public", "--gated", "manual")
    rows = {
        r["id"]: r
        for r in json.loads(hub.cli("repo", "list", "--json").stdout)
        if r["type"] == "dataset"
    }
    assert rows[f"{user}/data"]["private"] is False and rows[f"{user}/data"]["gated"] == "manual"

    reader = hub.make_user()
    token = hub.make_token(reader, "read")
    url = f"{hub.url}/datasets/{user}/data"
    gated = git.run("ls-remote", url, token=token, check=False)
    assert gated.returncode != 0 and "restricted" in gated.stderr
    hub.cli("access", "grant", "--type", "dataset", f"{user}/data", reader)
    git.run("ls-remote", url, token=token)

    record = hub.accounts.repos.get(RepoId.parse(f"{user}/data", "dataset"))
    path = hub.accounts.repos.path(record)
    assert path.is_dir()
    hub.cli("repo", "delete", "--type", "dataset", f"{user}/data")
    assert not path.exists()
    assert git.run("ls-remote", url, token=token, check=False).returncode != 0
    missing = hub.cli("repo", "delete", "--type", "dataset", f"{user}/data", check=False)
    assert missing.returncode == 1 and "No dataset" in missing.stderr


def test_unreachable_database_is_a_clear_error(tmp_path):
    result = run_cli("user", "list-nothing", check=False)
    assert result.returncode == 2
    result = run_cli(
        "user",
        "add",
        "someone",
        "--data-dir",
        str(tmp_path),
        "--database-url",
        "postgresql+psycopg://nobody@127.0.0.1:1/none",
        check=False,
    )
    assert result.returncode == 1
    assert "cannot reach the database" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_zero_configuration(tmp_path: Path, git: Git):
    """A fresh HOME, hfgit not on PATH: serve creates the data directory and prints
    commands that, run as printed, give a first user, repo and token that git can use."""
    home = tmp_path / "home"
    venv_bin = str(Path(sys.executable).parent)
    path = os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep) if p != venv_bin)
    env = {**os.environ, "HOME": str(home), "PATH": path}
    for name in ("HFGIT_DATA_DIR", "XDG_DATA_HOME", "HFGIT_DATABASE_URL"):
        env.pop(name, None)
    port = free_port()
    log = tmp_path / "serve.log"
    process = spawn(cli_command("serve", "--port", str(port), "--workers", "1"), log, env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process, log)
        data_dir = home / ".local" / "share" / "hfgit"
        assert (data_dir / "hfgit.db").is_file()
        assert (data_dir / "repos").is_dir()
        assert oct(data_dir.stat().st_mode & 0o777) == "0o700"
        printed = [line.strip() for line in log.read_text().splitlines()]
        commands = [line for line in printed if " user add " in line or " repo create " in line]
        commands += [line for line in printed if " token create " in line]
        assert len(commands) == 3
        outputs = [
            subprocess.run(
                shlex.split(command), env=env, capture_output=True, text=True, check=True
            ).stdout
            for command in commands
        ]
        token = outputs[-1].strip()
        assert TOKEN_RE.fullmatch(token)
        assert f"git clone {url}/alice/my-model" in log.read_text()
        git.run("ls-remote", f"{url}/alice/my-model", token=token, username="alice")
    finally:
        stop_server(process)
