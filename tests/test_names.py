"""Repo identity: valid names, reserved namespaces and canonical paths."""

from __future__ import annotations

import pytest

from hfgit.names import InvalidName, RepoId, is_canonical, parse_repo_path


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


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/alice/bert/info/refs", ("model", "alice", "bert", "info/refs")),
        ("/alice/bert.git/git-upload-pack", ("model", "alice", "bert", "git-upload-pack")),
        ("/datasets/alice/squad/info/refs", ("dataset", "alice", "squad", "info/refs")),
        ("/spaces/alice/demo.git/git-receive-pack", ("space", "alice", "demo", "git-receive-pack")),
        (
            "/alice/bert.git/info/lfs/objects/batch",
            ("model", "alice", "bert", "info/lfs/objects/batch"),
        ),
        ("/alice/bert", ("model", "alice", "bert", "")),
    ],
)
def test_parse_repo_path(path, expected):
    parsed = parse_repo_path(path)
    assert parsed is not None
    assert (parsed.repo.type, parsed.repo.namespace, parsed.repo.name, parsed.rest) == expected


@pytest.mark.parametrize(
    "path", ["/alice", "/datasets/alice", "/api/whoami", "/alice/a..b/info/refs"]
)
def test_paths_naming_no_repo(path):
    assert parse_repo_path(path) is None


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
