"""Real git against a real ``hfgit serve``: who may clone and push what (issue 2)."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa

from hfgit.store import tokens as token_table
from hubtest import ENGINES, Git, Hub, http_request, unique


@pytest.fixture
def hub(request: pytest.FixtureRequest) -> Hub:
    """The git engine's server, or each engine's in turn for tests marked ``on_both``."""
    engine = getattr(request, "param", "git")
    return request.getfixturevalue(f"{engine}_hub")


#: Fetch tests: run on both engines' servers.
on_both = pytest.mark.parametrize("hub", ENGINES, indirect=True)


def refs_url(hub: Hub, repo: str, service: str = "git-upload-pack", type: str = "model") -> str:
    return f"{hub.repo_url(repo, type)}/info/refs?service={service}"


@pytest.fixture
def alice(hub: Hub) -> str:
    return hub.make_user()


def seeded_repo(hub: Hub, git: Git, tmp_path: Path, repo: str, **kwargs) -> Path:
    """Create ``repo`` on the server with one commit pushed by its namespace owner."""
    rid = hub.make_repo(repo, **kwargs)
    owner_token = hub.make_token(rid.namespace) if "creator" not in kwargs else None
    worktree = git.init_worktree(tmp_path / unique("seed"), {"README.md": f"{repo}\n"})
    if owner_token is not None:
        git.run("push", hub.repo_url(rid), "main", cwd=worktree, token=owner_token)
    return worktree


@on_both
def test_anonymous_clone_of_public_repo(hub, git, tmp_path, alice):
    seeded_repo(hub, git, tmp_path, f"{alice}/public")
    git.run("clone", hub.repo_url(f"{alice}/public"), str(tmp_path / "c"))
    assert (tmp_path / "c" / "README.md").read_text() == f"{alice}/public\n"


@on_both
def test_private_repo_asks_for_credentials(hub, git, tmp_path, alice):
    hub.make_repo(f"{alice}/secret", private=True)
    status, headers, body = http_request("GET", refs_url(hub, f"{alice}/secret"))
    assert status == 401
    assert b"user access token" in body
    assert headers["WWW-Authenticate"] == 'Basic realm="hfgit"'
    assert headers["Content-Type"].startswith("text/plain")
    result = git.run("clone", hub.repo_url(f"{alice}/secret"), str(tmp_path / "c"), check=False)
    assert result.returncode != 0
    assert not (tmp_path / "c").exists()


@on_both
def test_clone_with_read_token_and_push_refused_with_reason(hub, git, tmp_path, alice):
    worktree = seeded_repo(hub, git, tmp_path, f"{alice}/m", private=True)
    read_token = hub.make_token(alice, "read", name="ci-read")
    git.run("clone", hub.repo_url(f"{alice}/m"), str(tmp_path / "c"), token=read_token)
    assert (tmp_path / "c" / "README.md").exists()

    git.commit(worktree, {"more.txt": "x"})
    result = git.run(
        "push", hub.repo_url(f"{alice}/m"), "main", cwd=worktree, token=read_token, check=False
    )
    assert result.returncode != 0
    assert "remote: Your token 'ci-read' has the read role" in result.stderr
    assert "403" in result.stderr


def test_push_with_write_token_is_audited(hub, git, tmp_path, alice):
    hub.make_repo(f"{alice}/m", private=True)
    token = hub.make_token(alice, "write")
    worktree = git.init_worktree(tmp_path / "wt")
    head = git.run("rev-parse", "HEAD", cwd=worktree).stdout.strip()
    git.run("push", hub.repo_url(f"{alice}/m"), "main", cwd=worktree, token=token)
    remote = git.run("ls-remote", hub.repo_url(f"{alice}/m"), token=token).stdout
    assert f"{head}\trefs/heads/main" in remote
    pushes = [e for e in hub.accounts.audit.events(200) if e.event == "push"]
    assert any(
        e.detail["refs"] == [{"ref": "refs/heads/main", "old": "0" * 40, "new": head}]
        for e in pushes
    )


def test_fine_grained_token_pushes_only_where_scoped(hub, git, tmp_path, alice):
    hub.make_repo(f"{alice}/scoped", private=True)
    hub.make_repo(f"{alice}/other", private=True)
    hub.make_repo(f"{alice}/public-other")
    token = hub.make_token(alice, "fineGrained", scopes=[f"model:{alice}/scoped=repo.write"])
    worktree = git.init_worktree(tmp_path / "wt")
    git.run("push", hub.repo_url(f"{alice}/scoped"), "main", cwd=worktree, token=token)

    hidden = git.run(
        "push", hub.repo_url(f"{alice}/other"), "main", cwd=worktree, token=token, check=False
    )
    assert hidden.returncode != 0 and "not found" in hidden.stderr
    public = git.run(
        "push",
        hub.repo_url(f"{alice}/public-other"),
        "main",
        cwd=worktree,
        token=token,
        check=False,
    )
    assert public.returncode != 0
    assert "does not grant repo.write" in public.stderr


def test_org_read_member_cannot_push_even_with_write_token(hub, git, tmp_path, alice):
    org = hub.make_org(members={alice: "read"})
    seeded_repo(hub, git, tmp_path, f"{org}/m", private=True, creator=alice)
    token = hub.make_token(alice, "write")
    git.run("clone", hub.repo_url(f"{org}/m"), str(tmp_path / "c"), token=token)
    worktree = git.init_worktree(tmp_path / "wt")
    result = git.run(
        "push", hub.repo_url(f"{org}/m"), "main", cwd=worktree, token=token, check=False
    )
    assert result.returncode != 0
    assert f"remote: You have the read role in organization {org}" in result.stderr


def test_contributor_pushes_only_to_repos_they_created(hub, git, tmp_path, alice):
    bob = hub.make_user()
    org = hub.make_org(members={alice: "contributor", bob: "write"})
    hub.make_repo(f"{org}/mine", private=True, creator=alice)
    hub.make_repo(f"{org}/theirs", private=True, creator=bob)
    token = hub.make_token(alice, "write")
    worktree = git.init_worktree(tmp_path / "wt")
    git.run("push", hub.repo_url(f"{org}/mine"), "main", cwd=worktree, token=token)
    result = git.run(
        "push", hub.repo_url(f"{org}/theirs"), "main", cwd=worktree, token=token, check=False
    )
    assert result.returncode != 0
    assert "contributors can only push to repositories they created" in result.stderr


def _assert_rejected(git: Git, hub: Hub, repo: str, token: str) -> None:
    result = git.run("ls-remote", hub.repo_url(repo), token=token, check=False)
    assert result.returncode != 0
    assert "Invalid username or password" in result.stderr


def test_deleted_token_fails_on_next_request(hub, git, alice):
    hub.make_repo(f"{alice}/m", private=True)
    token = hub.make_token(alice, "read", name="doomed")
    git.run("ls-remote", hub.repo_url(f"{alice}/m"), token=token)
    hub.cli("token", "delete", alice, "doomed")
    _assert_rejected(git, hub, f"{alice}/m", token)


def test_refreshed_token_old_value_dies_new_value_works(hub, git, alice):
    hub.make_repo(f"{alice}/m", private=True)
    old = hub.make_token(alice, "read", name="app")
    git.run("ls-remote", hub.repo_url(f"{alice}/m"), token=old)
    new = hub.cli("token", "refresh", alice, "app").stdout.strip()
    assert new != old
    _assert_rejected(git, hub, f"{alice}/m", old)
    git.run("ls-remote", hub.repo_url(f"{alice}/m"), token=new)
    assert [t.name for t in hub.accounts.tokens.list(alice)] == ["app"]


def test_expired_token_fails(hub, git, alice):
    hub.make_repo(f"{alice}/m", private=True)
    token = hub.make_token(alice, "read", name="short", expires_in_days=1)
    git.run("ls-remote", hub.repo_url(f"{alice}/m"), token=token)
    owner_id = hub.accounts.users.get(alice).id
    with hub.accounts.store.begin() as conn:
        conn.execute(
            sa.update(token_table)
            .where(token_table.c.owner_id == owner_id, token_table.c.display_name == "short")
            .values(expires_at=1.0)
        )
    _assert_rejected(git, hub, f"{alice}/m", token)


def test_password_instead_of_token_is_refused_with_message(hub, git, alice):
    hub.make_repo(f"{alice}/m", private=True)
    result = git.run(
        "ls-remote", hub.repo_url(f"{alice}/m"), token="correct horse battery", check=False
    )
    assert result.returncode != 0
    assert (
        "remote: Password authentication in git is no longer supported. "
        "You must use a user access token instead." in result.stderr
    )


def test_org_api_token_is_refused_as_deprecated(hub, alice):
    hub.make_repo(f"{alice}/m", private=True)
    status, headers, body = http_request(
        "GET", refs_url(hub, f"{alice}/m"), token="api_org_" + "x" * 30
    )
    assert status == 401 and "WWW-Authenticate" in headers
    assert b"deprecated" in body


@on_both
def test_bearer_token_is_accepted(hub, alice):
    hub.make_repo(f"{alice}/m", private=True)
    token = hub.make_token(alice, "read")
    status, headers, body = http_request(
        "GET", refs_url(hub, f"{alice}/m"), token=token, bearer=True
    )
    assert status == 200
    assert headers["Content-Type"] == "application/x-git-upload-pack-advertisement"
    assert body.startswith(b"001e# service=git-upload-pack\n0000")


@on_both
def test_hidden_private_repo_answers_exactly_like_a_missing_one(hub, alice):
    hub.make_repo(f"{alice}/hidden", private=True)
    stranger = hub.make_user()
    token = hub.make_token(stranger, "write")
    for service in ("git-upload-pack", "git-receive-pack"):
        for secret in (token, None):
            hidden = http_request("GET", refs_url(hub, f"{alice}/hidden", service), token=secret)
            missing = http_request("GET", refs_url(hub, f"{alice}/nope", service), token=secret)
            assert hidden[0] == missing[0] == (404 if secret else 401)
            assert hidden[2] == missing[2]
            for header in ("Content-Type", "WWW-Authenticate", "Content-Length"):
                assert hidden[1].get(header) == missing[1].get(header)


@on_both
@pytest.mark.parametrize(("type", "prefix"), [("dataset", "datasets"), ("space", "spaces")])
def test_datasets_and_spaces_urls(hub, git, tmp_path, alice, type, prefix):
    hub.make_repo(f"{alice}/thing", private=True, type=type)
    token = hub.make_token(alice, "write")
    worktree = git.init_worktree(tmp_path / "wt")
    url = f"{hub.url}/{prefix}/{alice}/thing.git"
    git.run("push", url, "main", cwd=worktree, token=token)
    git.run("clone", url, str(tmp_path / "c"), token=token)
    assert (tmp_path / "c" / "README.md").exists()
    # The same name as a model is another repository, which does not exist.
    assert http_request("GET", refs_url(hub, f"{alice}/thing"), token=token)[0] == 404


@pytest.mark.parametrize(
    "suffix",
    ["HEAD", "objects/info/packs", "info/refs", "objects/12/3456", "info/lfs-nope", "config"],
)
def test_dumb_protocol_paths_are_not_served(hub, alice, suffix):
    hub.make_repo(f"{alice}/pub")
    status, _, body = http_request("GET", f"{hub.repo_url(f'{alice}/pub')}/{suffix}")
    assert status == 404
    assert b"smart HTTP" in body


def test_unknown_service_is_a_4xx(hub, alice):
    hub.make_repo(f"{alice}/pub")
    for service in ("git-upload-archive", "nonsense", "%C3%A9"):
        status, _, _ = http_request(
            "GET", f"{hub.repo_url(f'{alice}/pub')}/info/refs?service={service}"
        )
        assert 400 <= status < 500


@pytest.mark.parametrize(
    "path",
    [
        "/x/../{ns}/pub/info/refs",
        "/{ns}/%70ub/info/refs",
        "/{ns}//pub/info/refs",
        "/{ns}/./pub/info/refs",
    ],
)
def test_non_canonical_paths_are_refused(hub, alice, path):
    import http.client

    hub.make_repo(f"{alice}/pub")
    host = hub.url.removeprefix("http://")
    connection = http.client.HTTPConnection(host, timeout=30)
    connection.request("GET", path.format(ns=alice) + "?service=git-upload-pack")
    response = connection.getresponse()
    assert response.status == 400
    connection.close()


@on_both
def test_case_insensitive_lookup_reaches_the_same_repo(hub, git, tmp_path, alice):
    seeded_repo(hub, git, tmp_path, f"{alice}/CaseRepo")
    git.run("clone", hub.repo_url(f"{alice.upper()}/caserepo"), str(tmp_path / "c"))
    assert (tmp_path / "c" / "README.md").read_text() == f"{alice}/CaseRepo\n"


def test_fifty_megabyte_push_through_hfgit_serve(hub, git, tmp_path, alice):
    """Ten 5 MB files: git sends the pack chunked, gunicorn de-chunks it exactly once."""
    import os

    hub.make_repo(f"{alice}/big", private=True)
    token = hub.make_token(alice, "write")
    files = {f"weights-{i}.bin": os.urandom(5 * 1024 * 1024) for i in range(10)}
    worktree = git.init_worktree(tmp_path / "wt", files)
    git.run("push", hub.repo_url(f"{alice}/big"), "main", cwd=worktree, token=token)
    git.run("clone", hub.repo_url(f"{alice}/big"), str(tmp_path / "c"), token=token)
    for name, content in files.items():
        assert (tmp_path / "c" / name).read_bytes() == content
