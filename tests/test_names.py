"""Repo identity: valid names, reserved namespaces and canonical paths."""

from __future__ import annotations

import pytest
from werkzeug.exceptions import NotFound

from hfgit.names import InvalidName, RepoId, is_canonical
from hfgit.server.routes import URL_MAP


@pytest.mark.parametrize("name", ["bert", "Bert-base.v2", "a", "x" * 96, "under_score", "a.b-c_d"])
def test_valid_names(name):
    assert RepoId.parse(f"alice/{name}").name == name


@pytest.mark.parametrize(
    "name",
    [
        "",
        "x" * 97,
        "-lead",
        "trail-",
        ".dot",
        "dot.",
        "a--b",
        "a..b",
        "model.git",
        "sp ace",
        "a/b",
        "é",
    ],
)
def test_invalid_names(name):
    with pytest.raises(InvalidName):
        RepoId.parse(f"alice/{name}")


@pytest.mark.parametrize(
    "namespace", ["datasets", "spaces", "api", "settings", "login", "logout", "API"]
)
def test_reserved_namespaces(namespace):
    with pytest.raises(InvalidName, match="reserved"):
        RepoId.parse(f"{namespace}/model")


def _match(path: str, method: str = "GET"):
    return URL_MAP.bind("hub.test").match(path, method=method)


@pytest.mark.parametrize(
    ("path", "method", "expected"),
    [
        ("/alice/bert/info/refs", "GET", ("model", "alice", "bert", "git.info_refs")),
        (
            "/alice/bert.git/git-upload-pack",
            "POST",
            ("model", "alice", "bert", "git.upload_pack"),
        ),
        ("/datasets/alice/squad/info/refs", "GET", ("dataset", "alice", "squad", "git.info_refs")),
        (
            "/spaces/alice/demo.git/git-receive-pack",
            "POST",
            ("space", "alice", "demo", "git.receive_pack"),
        ),
        (
            "/alice/bert.git/info/lfs/objects/batch",
            "POST",
            ("model", "alice", "bert", "lfs.batch"),
        ),
        (
            "/api/datasets/alice/squad/auth-check",
            "GET",
            ("dataset", "alice", "squad", "api.auth_check_read"),
        ),
    ],
)
def test_routes_name_the_repository(path, method, expected):
    endpoint, args = _match(path, method)
    repo = args["repo"]
    assert (repo.type, repo.namespace, repo.name, endpoint) == expected


@pytest.mark.parametrize(
    "path",
    [
        "/alice",
        "/alice/bert",
        "/datasets/alice",
        "/datasets/alice/info/refs",
        "/api/whoami",
        "/alice/a..b/info/refs",
        "/api/alice/bert/info/refs",
        "/api/models/alice/a--b/auth-check",
        "/alice/bert/objects/info/packs",
        "/alice/bert/info/lfs/objects/NOTANOID/12",
    ],
)
def test_paths_naming_no_repo(path):
    with pytest.raises(NotFound):
        _match(path)


@pytest.mark.parametrize(
    "raw",
    [
        "/alice/../bob/bert/info/refs",
        "/alice/%62ert/info/refs",
        "/alice//bert",
        "/alice/./bert",
        "/alice/bert%2Finfo",
        "/a\\b",
    ],
)
def test_non_canonical_paths(raw):
    assert not is_canonical(raw)


def test_canonical_path():
    assert is_canonical("/datasets/alice/squad.git/info/refs")
