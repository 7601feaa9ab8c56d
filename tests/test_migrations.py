"""Schema migrations: the revisions build the declared schema, and old databases upgrade.

The upgrade test runs hfgit 0.1 itself (the release before migrations, taken from its git
commit) to make a data directory, then serves it with this code. Each later revision
adds its own check there, on data 0.1 made: 0002 (accounts can be disabled), 0003
(repository scopes bound to identities, a stale one matching nothing).
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from io import BytesIO
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from hfgit import migrations
from hfgit.store import Store, metadata
from hubtest import (
    ROOT,
    Git,
    cli_command,
    free_port,
    run_cli,
    spawn,
    stop_server,
    wait_healthy,
)

#: The last commit whose schema was made by ``metadata.create_all``: revision 0001.
RELEASE_0_1 = "4040679"


def _differences(url: str) -> list:
    store = Store(url)
    store.upgrade()
    with store.engine.connect() as conn:
        found = compare_metadata(MigrationContext.configure(conn), metadata)
    store.dispose()
    return found


def test_revisions_build_exactly_the_declared_schema_on_sqlite(tmp_path: Path):
    assert _differences(f"sqlite:///{tmp_path / 'fresh.db'}") == []


def test_revisions_build_exactly_the_declared_schema_on_postgres(fresh_postgres_url: str):
    assert _differences(fresh_postgres_url) == []


def _hfgit(*args: str, pythonpath: Path | None = None) -> str:
    """``hfgit ARGS``'s standard output; with ``pythonpath``, that release's hfgit."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)} if pythonpath else None
    return run_cli(*args, env=env).stdout.strip()


@contextmanager
def _serving(data: Path, pythonpath: Path | None = None) -> Iterator[str]:
    """``hfgit serve`` on ``data`` as it is: unlike ``running_hub``, nothing is opened
    (nor upgraded) with this release's code first."""
    env = {**os.environ, "PYTHONPATH": str(pythonpath)} if pythonpath else dict(os.environ)
    port = free_port()
    log = data.parent / f"serve-{port}.log"
    command = cli_command("serve", "--data-dir", str(data), "--port", str(port), "--workers", "1")
    process = spawn(command, log, env)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process, log)
        yield url
    finally:
        stop_server(process)


@pytest.fixture(scope="module")
def release_0_1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The source of hfgit 0.1, from the project's own history."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", RELEASE_0_1, "src"], capture_output=True
    )
    if archive.returncode != 0:
        pytest.fail(f"commit {RELEASE_0_1} (hfgit 0.1) is not in this clone: {archive.stderr!r}")
    target = tmp_path_factory.mktemp("hfgit-0.1")
    with tarfile.open(fileobj=BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")
    return target / "src"


def test_data_directory_of_hfgit_0_1_is_upgraded_in_place(
    release_0_1: Path, tmp_path: Path, git: Git
):
    data = tmp_path / "data"
    old = ["--data-dir", str(data)]
    _hfgit("user", "add", "alice", *old, pythonpath=release_0_1)
    _hfgit("user", "add", "bob", *old, pythonpath=release_0_1)
    _hfgit("org", "add", "acme", *old, pythonpath=release_0_1)
    _hfgit("org", "member", "acme", "bob", "--role", "write", *old, pythonpath=release_0_1)
    _hfgit("repo", "create", "alice/weights", "--private", *old, pythonpath=release_0_1)
    _hfgit("repo", "create", "acme/shared", "--private", *old, pythonpath=release_0_1)
    alice = _hfgit(
        "token",
        "create",
        "alice",
        "--name",
        "laptop",
        "--role",
        "write",
        *old,
        pythonpath=release_0_1,
    )
    bob = _hfgit(
        "token",
        "create",
        "bob",
        "--name",
        "ci",
        "--role",
        "fineGrained",
        "--scope",
        "org:acme=repo.write",
        *old,
        pythonpath=release_0_1,
    )
    # Scopes as 0.1 stored them, by name (revision 0003 binds them to identities): one
    # on a repository that exists, one on a repository deleted since.
    scoped = _hfgit(
        "token",
        "create",
        "alice",
        "--name",
        "scoped",
        "--role",
        "fineGrained",
        "--scope",
        "model:alice/weights=repo.write",
        *old,
        pythonpath=release_0_1,
    )
    _hfgit("repo", "create", "alice/gone", "--private", *old, pythonpath=release_0_1)
    stale = _hfgit(
        "token",
        "create",
        "alice",
        "--name",
        "stale",
        "--role",
        "fineGrained",
        "--scope",
        "model:alice/gone=repo.write",
        *old,
        pythonpath=release_0_1,
    )
    _hfgit("repo", "delete", "alice/gone", *old, pythonpath=release_0_1)
    assert Store(f"sqlite:///{data / 'hfgit.db'}").revision() == migrations.BASELINE

    # The old server takes a push, so the upgrade must keep repositories' contents too.
    with _serving(data, release_0_1) as url:
        work = git.init_worktree(tmp_path / "work", {"README.md": "from 0.1\n"})
        git.run("push", f"{url}/alice/weights", "main", cwd=work, token=alice)

    with _serving(data) as url:  # this release: upgrades the embedded database by itself
        assert _hfgit("db", "current", *old) == migrations.head()
        git.run("clone", f"{url}/alice/weights", str(tmp_path / "clone"), token=alice)
        assert (tmp_path / "clone" / "README.md").read_text() == "from 0.1\n"
        shared = git.init_worktree(tmp_path / "shared", {"model.txt": "acme\n"})
        git.run("push", f"{url}/acme/shared", "main", cwd=shared, token=bob)
        refused = git.run("ls-remote", f"{url}/alice/weights", token=bob, check=False)
        assert refused.returncode != 0

        # 0002: accounts made by 0.1 can be disabled and enabled again.
        _hfgit("user", "disable", "bob", *old)
        disabled = git.run("ls-remote", f"{url}/acme/shared", token=bob, check=False)
        assert "disabled" in disabled.stderr
        _hfgit("user", "enable", "bob", *old)
        git.run("ls-remote", f"{url}/acme/shared", token=bob)

        # 0003: the 0.1 scope now names alice/weights by identity: it follows a move...
        git.run("push", f"{url}/alice/weights", "main:scoped", cwd=work, token=scoped)
        _hfgit("repo", "move", "alice/weights", "alice/renamed", *old)
        git.run("push", f"{url}/alice/renamed", "main:moved", cwd=work, token=scoped)
        # ...and covers neither a new repository under the old name nor one under the
        # name of a repository deleted before the upgrade.
        _hfgit("repo", "create", "alice/weights", "--private", *old)
        _hfgit("repo", "create", "alice/gone", "--private", *old)
        for name, token in (("weights", scoped), ("gone", stale)):
            hidden = git.run("ls-remote", f"{url}/alice/{name}", token=token, check=False)
            assert hidden.returncode != 0 and "not found" in hidden.stderr.lower()
    listed = _hfgit("token", "list", "bob", "--json", *old)
    assert '"org"' in listed and '"acme"' in listed
    listed = json.loads(_hfgit("token", "list", "alice", "--json", *old))
    shown = {token["name"]: [scope["name"] for scope in token["scopes"]] for token in listed}
    assert shown["scoped"] == ["alice/renamed"] and shown["stale"] == ["alice/gone"]
    assert _hfgit("db", "upgrade", *old) == ""  # idempotent: nothing on stdout, no error


def test_serve_refuses_a_database_it_does_not_upgrade_itself(
    fresh_postgres_url: str, tmp_path: Path
):
    data = tmp_path / "data"
    serve = ["serve", "--data-dir", str(data), "--database-url", fresh_postgres_url]
    refused = run_cli(*serve, "--port", str(free_port()), check=False)
    assert refused.returncode == 1
    assert "hfgit db upgrade" in refused.stderr
    assert Store(fresh_postgres_url).revision() is None  # nothing was created

    upgrade = ["db", "upgrade", "--data-dir", str(data), "--database-url", fresh_postgres_url]
    _hfgit(*upgrade)
    assert Store(fresh_postgres_url).revision() == migrations.head()
