"""The file API's URLs: percent-encoded revisions and paths are accepted there, path
tricks are not, a hidden repository answers byte for byte like a missing one on every
new route, and bad input gets a 4xx, never a 5xx."""

from __future__ import annotations

import json

import pytest
from huggingface_hub import HfApi

from filesupport import raw_request
from hubtest import Hub, unique

#: Every route of the file API: method, path after the repository, body, content type.
ROUTES = [
    ("HEAD", "{file}/resolve/main/config.json", None, None),
    ("GET", "{file}/resolve/main/config.json", None, None),
    ("GET", "{file}/resolve/feat%2Fx/a%20b.txt", None, None),
    ("GET", "{api}", None, None),
    ("GET", "{api}/revision/main", None, None),
    ("GET", "{api}/tree/main", None, None),
    ("GET", "{api}/tree/main/sub%2Fdir?recursive=true", None, None),
    ("POST", "{api}/paths-info/main", b"paths=config.json", "application/x-www-form-urlencoded"),
    ("GET", "{api}/refs", None, None),
    ("GET", "{api}/commits/main", None, None),
    ("POST", "{api}/preupload/main", b'{"files": []}', "application/json"),
    ("POST", "{api}/commit/main", b'{"key": "header", "value": {"summary": "x"}}\n', None),
    ("POST", "{api}/branch/feat%2Fy", b"{}", "application/json"),
    ("DELETE", "{api}/branch/feat%2Fx", None, None),
    ("POST", "{api}/tag/main", b'{"tag": "t1"}', "application/json"),
    ("DELETE", "{api}/tag/v1", None, None),
    ("GET", "{api}/xet-write-token/main", None, None),
    ("GET", "{api}/xet-read-token/main", None, None),
    (
        "POST",
        "{file}.git/info/lfs/objects/batch",
        b'{"operation": "download", "objects": []}',
        None,
    ),
]
COMPARED = ("Content-Type", "Content-Length", "X-Error-Code", "X-Error-Message", "X-Repo-Commit")


@pytest.fixture(scope="module")
def setting(hub: Hub) -> dict:
    owner = hub.make_user()
    token = hub.make_token(owner, "write")
    api = HfApi(endpoint=hub.url, token=token)
    repos = {}
    for kind in ("model", "dataset"):
        repo = hub.make_repo(f"{owner}/{unique('hidden')}", private=True, type=kind)
        api.upload_file(
            path_or_fileobj=b"{}", path_in_repo="config.json", repo_id=repo.repo_id, repo_type=kind
        )
        api.create_branch(repo.repo_id, branch="feat/x", repo_type=kind)
        api.create_tag(repo.repo_id, tag="v1", repo_type=kind)
        repos[kind] = repo
    return {"owner": owner, "token": token, "repos": repos}


def _paths(repo_type: str, namespace: str, name: str, template: str) -> str:
    prefix = {"model": "", "dataset": "datasets/"}[repo_type]
    return template.format(
        file=f"/{prefix}{namespace}/{name}", api=f"/api/{repo_type}s/{namespace}/{name}"
    )


@pytest.mark.parametrize("kind", ["model", "dataset"])
@pytest.mark.parametrize(("method", "template", "body", "content_type"), ROUTES)
def test_hidden_repo_answers_exactly_like_a_missing_one(
    hub: Hub, setting: dict, kind: str, method: str, template: str, body, content_type
) -> None:
    repo = setting["repos"][kind]
    stranger = hub.make_token(hub.make_user(), "write")
    headers = {"Content-Type": content_type} if content_type else {}
    for token in (stranger, None):
        hidden = raw_request(
            hub,
            method,
            _paths(kind, repo.namespace, repo.name, template),
            token=token,
            body=body,
            headers=headers,
        )
        missing = raw_request(
            hub,
            method,
            _paths(kind, repo.namespace, unique("nope"), template),
            token=token,
            body=body,
            headers=headers,
        )
        assert hidden[0] == missing[0] == (404 if token else 401)
        assert hidden[2] == missing[2]
        for header in COMPARED:
            assert hidden[1].get(header) == missing[1].get(header), header
        if "X-Error-Code" in hidden[1]:
            assert hidden[1]["X-Error-Code"] == "RepoNotFound"
    if method not in ("GET", "HEAD"):
        return  # the owner's answer to a write is tested with the client elsewhere
    # The owner gets an answer (not a refusal for being hidden).
    owned = raw_request(
        hub,
        method,
        _paths(kind, repo.namespace, repo.name, template),
        token=setting["token"],
        body=body,
        headers=headers,
    )
    assert owned[0] < 500
    assert owned[1].get("X-Error-Code") != "RepoNotFound"


@pytest.mark.parametrize(
    "tail",
    [
        "resolve/main/..%2F..%2Fsecret",
        "resolve/main/a/%2e%2e/b",
        "resolve/main/a/%2E/b",
        "resolve/main/sub%2Fdir%2Fa%20b.txt",
        "resolve/main/a%00b",
        "resolve/main/a%5Cb",
        "resolve/main/a%0Ab",
        "resolve/main/%ff",
        "resolve/main//config.json",
        "resolve/..%2Fmain/config.json",
        "resolve/%2e%2e/config.json",
        "resolve/feat%2F%2Fx/config.json",
        "resolve/%00/config.json",
    ],
)
def test_encoded_path_tricks_are_refused(hub: Hub, setting: dict, tail: str) -> None:
    repo = setting["repos"]["model"]
    status, headers, _ = raw_request(hub, "GET", f"/{repo.repo_id}/{tail}", token=setting["token"])
    assert status == 400, tail
    assert "X-Repo-Commit" not in headers


@pytest.mark.parametrize(
    "path",
    [
        "/{ns}/%70ub/resolve/main/config.json",
        "/{ns}%2Fpub/resolve/main/config.json",
        "/x/../{ns}/pub/resolve/main/config.json",
        "/{ns}/./pub/resolve/main/config.json",
        "/{ns}//pub/resolve/main/config.json",
        "/api/models/{ns}/%70ub/tree/main",
        "/api/models/{ns}/pub/../x/tree/main",
        "/api/models/%2e%2e/pub/revision/main",
        "/datasets/{ns}/p%75b/resolve/main/x",
    ],
)
def test_the_repository_part_must_stay_canonical(hub: Hub, setting: dict, path: str) -> None:
    status, _, body = raw_request(hub, "GET", path.format(ns=setting["owner"]))
    assert status == 400 and b"Non-canonical path." in body


def test_encoded_revisions_and_paths_work(hub: Hub, setting: dict) -> None:
    repo, token = setting["repos"]["model"], setting["token"]
    for revision in ("main", "feat%2Fx", "refs%2Fheads%2Ffeat%2Fx", "v1", "refs%2Ftags%2Fv1"):
        status, _, body = raw_request(
            hub, "GET", f"/{repo.repo_id}/resolve/{revision}/config.json", token=token
        )
        assert status == 200 and body == b"{}", revision
    status, _, _ = raw_request(
        hub, "GET", f"/{repo.repo_id}/resolve/m%61in/c%6Fnfig.json", token=token
    )
    assert status == 200


@pytest.mark.parametrize(
    ("method", "tail", "body", "content_type"),
    [
        ("GET", "{api}/tree/main?cursor=abc", None, None),
        ("GET", "{api}/tree/main?cursor=-1", None, None),
        ("GET", "{api}/commits/main?p=x", None, None),
        ("POST", "{api}/preupload/main", b"not json", "application/json"),
        ("POST", "{api}/preupload/main", b'{"files": [{"path": "a"}]}', "application/json"),
        (
            "POST",
            "{api}/preupload/main",
            b'{"files": [{"path": "../a", "size": 1}]}',
            "application/json",
        ),
        ("POST", "{api}/preupload/refs%2Fpr%2F1", b'{"files": []}', "application/json"),
        ("POST", "{api}/preupload/main?create_pr=1", b'{"files": []}', "application/json"),
        ("POST", "{api}/commit/main", b"\xff\xfe", None),
        ("POST", "{api}/commit/main", b'{"key": "file", "value": {}}\n', None),
        ("POST", "{api}/commit/main", b"[1, 2]\n", None),
        (
            "POST",
            "{api}/commit/main?create_pr=1",
            b'{"key": "header", "value": {"summary": "x"}}\n',
            None,
        ),
        ("POST", "{api}/branch/bad..name", b"{}", "application/json"),
        ("POST", "{api}/branch/refs%2Fpr%2F5", b"{}", "application/json"),
        ("POST", "{api}/branch/ok", b'{"startingPoint": 5}', "application/json"),
        ("POST", "{api}/branch/feat%2Fx", b"{}", "application/json"),
        ("POST", "{api}/tag/main", b"{}", "application/json"),
        ("POST", "{api}/tag/main", b'{"tag": "bad..tag"}', "application/json"),
        ("POST", "{api}/tag/main", b'{"tag": "v1"}', "application/json"),
        ("POST", "{api}/tag/nope", b'{"tag": "v9"}', "application/json"),
        # Lone surrogates in JSON bodies (no UTF-8 spelling) are refused, not a 500.
        ("POST", "{api}/tag/main", b'{"tag": "t\\ud800"}', "application/json"),
        ("POST", "{api}/branch/s1", b'{"startingPoint": "\\ud800"}', "application/json"),
        (
            "POST",
            "{api}/preupload/main",
            b'{"files": [{"path": "\\ud800", "size": 1}]}',
            "application/json",
        ),
        (
            "POST",
            "{api}/commit/main",
            b'{"key": "header", "value": {"summary": "x"}}\n'
            b'{"key": "deletedFile", "value": {"path": "\\ud800"}}\n',
            None,
        ),
        ("DELETE", "{api}/branch/main", None, None),
        ("DELETE", "{api}/branch/nope", None, None),
        ("DELETE", "{api}/tag/nope", None, None),
        ("PUT", "{file}/resolve/main/config.json", b"x", None),
        ("GET", "{file}/resolve/main", None, None),
        ("GET", "{api}/tree/main/config.json", None, None),
        ("GET", "{api}/revision/bad..rev", None, None),
        # Messages that name non-ASCII paths still fit in a header (no 500 from gunicorn).
        ("GET", "{file}/resolve/main/%E6%97%A5%E6%9C%AC.txt", None, None),
        ("GET", "{api}/tree/main/%E6%97%A5%E6%9C%AC", None, None),
        ("GET", "{file}/resolve/" + "a" * 300 + "/config.json", None, None),
    ],
)
def test_bad_input_is_a_4xx(hub: Hub, setting: dict, method, tail, body, content_type) -> None:
    repo = setting["repos"]["model"]
    headers = {"Content-Type": content_type} if content_type else {}
    path = _paths("model", repo.namespace, repo.name, tail)
    status, answer_headers, raw = raw_request(
        hub, method, path, token=setting["token"], body=body, headers=headers
    )
    assert 400 <= status < 500, (status, raw)
    if path.startswith("/api/") and method != "HEAD":
        assert answer_headers.get("X-Error-Message")
        json.loads(raw)


def test_a_garbled_range_is_ignored_not_an_error(hub: Hub, setting: dict) -> None:
    repo, token = setting["repos"]["model"], setting["token"]
    for value in ("bytes=abc", "bytes=5-2", "lines=1-2", "bytes=0-1,3-4"):
        status, _, body = raw_request(
            hub,
            "GET",
            f"/{repo.repo_id}/resolve/main/config.json",
            token=token,
            headers={"Range": value},
        )
        assert status == 200 and body == b"{}", value
