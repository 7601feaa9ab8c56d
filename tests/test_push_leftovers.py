"""A refused, truncated or interrupted push leaves the repository byte for byte as it was."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

from _wire import PushTarget, push_body, raw_request, report_status, request_head, snapshot


def _commit(target, scratch, text: bytes) -> tuple[str, bytes]:
    commit, objects = scratch.commit_files({"f.txt": text * 1000}, (target.main,))
    return commit, scratch.pack(objects)


def _served(target, path: str) -> int:
    """How many requests for ``path`` the server's access log shows as finished."""
    return target.hub.log.read_text(errors="replace").count(f'{path}" ')


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
    head = request_head(
        "POST",
        target.url,
        "/git-receive-pack",
        target.token,
        {
            "Content-Type": "application/x-git-receive-pack-request",
            "Content-Length": str(len(body)),
        },
    )

    endpoint = f"{urlsplit(target.url).path}/git-receive-pack"
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
