"""Inputs that once made a 500 or a broken connection: each now gets a 4xx or an ``ERR``.

Every test sends the very input that failed, to a real server, and checks both the
answer and that the server still serves. The fuzz tests (``test_fuzz_routes.py``) found
some of these; their regressions live here so each runs on its own, every time.
"""

from __future__ import annotations

import http.client
import json
from urllib.parse import urlsplit

import pytest

from _wire import FLUSH, PushTarget, pkt, post, read_pkts
from hfgit.server.body import BodyError, parse_json
from hubtest import Git, Hub, basic_auth

UPLOAD = "git-upload-pack"
RECEIVE = "git-receive-pack"
LFS_MEDIA = "application/vnd.git-lfs+json"


@pytest.fixture(scope="module")
def target(hub: Hub, tmp_path_factory) -> PushTarget:
    tmp = tmp_path_factory.mktemp("bad-input")
    return PushTarget.create(hub, Git(tmp / "home"), tmp)


def _healthy(target: PushTarget) -> None:
    assert post(target.url, UPLOAD, FLUSH, target.token).status == 200


def _send(url: str, method: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    """One request whose whole body is sent before the answer is read, as git-lfs does."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    try:
        conn.request(method, parts.path, body, headers)
        answer = conn.getresponse()
        return answer.status, answer.read()
    finally:
        conn.close()


def _batch(target: PushTarget, body: bytes) -> tuple[int, bytes]:
    headers = {
        "Content-Type": LFS_MEDIA,
        "Accept": LFS_MEDIA,
        "Authorization": basic_auth(target.token),
    }
    return _send(f"{target.url}.git/info/lfs/objects/batch", "POST", body, headers)


@pytest.mark.parametrize(
    "body",
    [b"0004", b"0004" + FLUSH, b"0004" * 3, b"00040000"],
    ids=["empty pkt", "empty pkt then flush", "three empty pkts", "empty pkt flush"],
)
def test_upload_pack_empty_pkt_line(target: PushTarget, body: bytes):
    answer = post(target.url, UPLOAD, body, target.token)
    assert 400 <= answer.status < 500 or (
        answer.status == 200 and any(p and p.startswith(b"ERR ") for p in read_pkts(answer.body))
    ), (answer.status, answer.body[:200])
    _healthy(target)


def test_receive_pack_empty_pkt_line(target: PushTarget):
    answer = post(target.url, RECEIVE, b"0004" + FLUSH, target.token)
    assert answer.status < 500, (answer.status, answer.body[:200])
    _healthy(target)


def test_upload_pack_empty_pkt_line_after_want(target: PushTarget):
    body = pkt(f"want {target.main} side-band-64k\n") + b"0004" + FLUSH + pkt("done\n")
    answer = post(target.url, UPLOAD, body, target.token)
    assert answer.status < 500, (answer.status, answer.body[:200])
    _healthy(target)


@pytest.mark.parametrize("depth", [10_000, 200])
def test_lfs_batch_nested_deep(target: PushTarget, depth: int):
    nested = b"[" * depth + b"]" * depth
    body = b'{"operation": "download", "objects": [{"oid": ' + nested + b', "size": 1}]}'
    status, answer = _batch(target, body)
    assert status in (400, 413, 422), (status, answer[:200])
    assert b"nested" in answer
    _healthy(target)


def test_lfs_batch_with_100000_objects(target: PushTarget):
    item = {"oid": "a" * 64, "size": 1}
    body = json.dumps({"operation": "download", "objects": [item] * 100_000}).encode()
    assert len(body) > 4 * 1024 * 1024  # over the batch body limit: refused by its length
    status, answer = _batch(target, body)
    assert status in (413, 422), (status, answer[:200])
    assert b"limit" in answer
    _healthy(target)


def test_lfs_batch_many_objects_within_the_body_limit(target: PushTarget):
    body = json.dumps({"operation": "download", "objects": [{}] * 100_000}).encode()
    status, answer = _batch(target, body)
    assert status in (413, 422), (status, answer[:200])
    assert b"limit" in answer
    _healthy(target)


def test_settings_page_redirects(hub: Hub):
    """``/settings`` was a 500: its handler was shadowed by the surface's configuration."""
    status, _ = _send(f"{hub.url}/settings", "GET", b"", {})
    assert status == 303


@pytest.mark.parametrize(
    "path",
    ["/{long}/{long}/info/lfs/locks/1/unlock", "/{long}/x/info/lfs/locks/verify", "/api/repos/x"],
)
def test_wrong_method_on_a_path_no_rule_accepts(hub: Hub, path: str):
    """A path that fits another method's rule until its converters refuse it: 404, not 500."""
    status, body = _send(hub.url + path.format(long="x" * 300), "GET", b"", {})
    assert status == 404, body[:200]


# The JSON caps themselves: pure code, table-tested.

JSON_SHAPES = [
    (b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}', None),  # brackets in a string
    (b'["\\"[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["]', None),  # after an escaped quote
    (b"[" * 32 + b"]" * 32, None),
    (b"[" * 33 + b"]" * 33, 400),
    (b"[" * 100_000, 400),
    (b"[" + b"1," * 9_998 + b"1]", None),
    (b"[" + b"1," * 9_999 + b"1]", None),  # 10,000 elements: the limit
    (b"[" + b"1," * 10_000 + b"1]", 413),
    (b'"' + b"\\\\" * 50_000 + b'"', None),
    (b'["unterminated', 400),
    (b"\xff\xfe", 400),
    (b"1" * 5000, 400),
]


@pytest.mark.parametrize(("raw", "status"), JSON_SHAPES, ids=range(len(JSON_SHAPES)))
def test_json_caps_before_parsing(raw: bytes, status: int | None):
    if status is None:
        parse_json(raw)
    else:
        with pytest.raises(BodyError) as refused:
            parse_json(raw)
        assert refused.value.status == status


def _file_api(target: PushTarget, suffix: str, body: bytes, content_type: str):
    parts = urlsplit(target.url)
    url = f"{parts.scheme}://{parts.netloc}/api/models{parts.path}/{suffix}"
    headers = {"Content-Type": content_type, "Authorization": basic_auth(target.token)}
    return _send(url, "POST", body, headers)


@pytest.mark.parametrize("suffix", ["paths-info/main", "preupload/main"])
def test_file_api_json_nested_deep(target: PushTarget, suffix: str):
    """Found by the fuzz run: the file API parsed JSON with werkzeug's unbounded loads."""
    status, answer = _file_api(target, suffix, b"[" * 10_000 + b"]" * 10_000, "application/json")
    assert 400 <= status < 500, answer[:200]
    _healthy(target)


def test_file_api_commit_line_nested_deep(target: PushTarget):
    line = b'{"key": "header", "value": ' + b"[" * 10_000 + b"]" * 10_000 + b"}\n"
    status, answer = _file_api(target, "commit/main", line, "application/x-ndjson")
    assert 400 <= status < 500, answer[:200]
    _healthy(target)
