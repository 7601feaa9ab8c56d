"""A refused, truncated or interrupted push leaves the repository byte for byte as it was."""

from __future__ import annotations

import base64
import time
from urllib.parse import urlsplit

from _wire import PushTarget, push_body, raw_request, report_status, snapshot


def _commit(target, scratch, text: bytes) -> tuple[str, bytes]:
    blob = scratch.blob(text * 1000)
    tree = scratch.tree([("100644", blob, "f.txt")])
    commit = scratch.commit(tree, (target.main,))
    return commit, scratch.pack([commit, tree, blob])


def _served(target, path: str) -> int:
    """How many requests for ``path`` the server's access log shows as finished."""
    logs = target.hub.data_dir.parent.glob("serve-*.log")
    return sum(log.read_text(errors="replace").count(f'{path}" ') for log in logs)


def _wait_served(target, path: str, count: int) -> None:
    for _ in range(200):
        if _served(target, path) > count:
            return
        time.sleep(0.05)
    raise AssertionError(f"the server never finished {path}")


def test_truncated_pack_leaves_nothing(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    commit, pack = _commit(target, scratch, b"truncated\n")
    before = snapshot(target.path)

    answer = target.push([(target.main, commit, "refs/heads/main")], pack[: len(pack) // 2])

    assert answer.status in (200, 400)
    if answer.status == 200:
        status = report_status(answer.body)
        assert status["unpack"] != "ok"
        assert status["refs/heads/main"] == "ng unpacker error"
    assert snapshot(target.path) == before


def test_corrupt_pack_checksum_leaves_nothing(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    commit, pack = _commit(target, scratch, b"corrupt\n")
    before = snapshot(target.path)
    broken = pack[:-20] + bytes(20)

    answer = target.push([(target.main, commit, "refs/heads/main")], broken)

    assert report_status(answer.body)["refs/heads/main"] == "ng unpacker error"
    assert snapshot(target.path) == before


def test_interrupted_upload_leaves_nothing(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    commit, pack = _commit(target, scratch, b"interrupted\n")
    body = push_body([(target.main, commit, "refs/heads/main")], pack)
    before = snapshot(target.path)
    parts = urlsplit(target.url)
    auth = base64.b64encode(f"u:{target.token}".encode()).decode()
    head = (
        f"POST {parts.path}/git-receive-pack HTTP/1.1\r\nHost: {parts.netloc}\r\n"
        f"Authorization: Basic {auth}\r\n"
        "Content-Type: application/x-git-receive-pack-request\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode()

    endpoint = f"{parts.path}/git-receive-pack"
    served = _served(target, endpoint)

    # Half the body, then the client hangs up.
    raw_request(target.url, head + body[: len(body) // 2], timeout=0.5)

    _wait_served(target, endpoint, served)
    assert snapshot(target.path) == before
    assert target.refs()["refs/heads/main"] == target.main


def test_refused_push_of_new_objects_adds_no_pack(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    commit, pack = _commit(target, scratch, b"refused\n")
    before = snapshot(target.path)

    answer = target.push([("3" * 40, commit, "refs/heads/main")], pack)

    assert report_status(answer.body)["refs/heads/main"] == "ng fetch first"
    assert snapshot(target.path) == before
