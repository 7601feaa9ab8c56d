"""``hfgit audit``: the audit trail read back, oldest first, with names instead of ids.

Changes are made the ways users make them (the ``hfgit`` command line, real git pushes)
against the shared server; the trail is read with the real command line.
"""

from __future__ import annotations

import json
from pathlib import Path

from hubtest import Git, Hub, unique


def audit(hub: Hub, *args: str) -> list[dict]:
    out = hub.cli("audit", "--json", *args).stdout
    return [json.loads(line) for line in out.splitlines()]


def events(lines: list[dict]) -> list[str]:
    return [line["event"] for line in lines if line["event"] != "token.use"]


def test_a_users_trail_with_every_ref_of_a_push(hub: Hub, git: Git, tmp_path: Path) -> None:
    user = unique("u")
    hub.cli("user", "add", user)
    repo = f"{user}/{unique('r')}"
    hub.cli("repo", "create", repo)
    token = hub.cli("token", "create", user, "--name", "laptop", "--role", "write").stdout.strip()
    work = git.init_worktree(tmp_path / "w")
    git.run("branch", "feature", cwd=work)
    head = git.run("rev-parse", "HEAD", cwd=work).stdout.strip()
    url = f"{hub.url}/{repo}"
    git.run("push", "-q", url, "main", "feature", cwd=work, token=token)
    hub.cli("repo", "set", repo, "--private")
    hub.cli("token", "refresh", user, "laptop")
    hub.cli("token", "delete", user, "laptop")
    hub.cli("repo", "delete", repo)

    lines = audit(hub, "--user", user)
    assert events(lines) == [
        "user.create",
        "token.create",
        "push",
        "push",
        "token.refresh",
        "token.delete",
    ]
    assert [line["time"] for line in lines] == sorted(line["time"] for line in lines)
    assert all(line["user"] == user for line in lines)
    # One line per ref; the token and the repository keep their names after deletion.
    pushes = [line for line in lines if line["event"] == "push"]
    assert sorted(line["ref"] for line in pushes) == ["refs/heads/feature", "refs/heads/main"]
    for line in pushes:
        assert line["token_name"] == "laptop"
        assert line["repo"] == f"model {repo}"
        assert line["old"] == "0" * 40 and line["new"] == head
        assert "admin" not in line
    created = next(line for line in lines if line["event"] == "token.create")
    assert created["token_name"] == "laptop" and created["admin"] is True
    assert created["detail"] == {"role": "write"}
    # Git's use of the token is there too, by the token it used.
    assert any(line["event"] == "token.use" and line["token_name"] == "laptop" for line in lines)

    on_repo = audit(hub, "--repo", repo)
    assert events(on_repo) == ["repo.create", "push", "push", "repo.update", "repo.delete"]
    assert all(line["repo"] == f"model {repo}" for line in on_repo)
    assert next(line for line in on_repo if line["event"] == "repo.update")["detail"] == {
        "private": True
    }
    assert audit(hub, "--repo", repo, "--type", "dataset") == []

    text = hub.cli("audit", "--repo", repo).stdout.splitlines()
    assert len(text) == len(on_repo)
    assert any("push" in line and "ref=refs/heads/feature" in line for line in text)


def test_since_and_its_errors(hub: Hub) -> None:
    user = hub.make_user()
    assert audit(hub, "--user", user, "--since", "2000-01-01") != []
    assert audit(hub, "--user", user, "--since", "2999-01-01T00:00:00+00:00") == []
    result = hub.cli("audit", "--since", "yesterday", check=False)
    assert result.returncode == 1
    assert "--since wants an ISO 8601 date or time" in result.stderr
