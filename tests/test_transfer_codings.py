"""Request bodies with a transfer coding other than plain ``chunked`` are refused everywhere.

gunicorn takes the chunking off ``Transfer-Encoding: gzip, chunked`` and passes the gzip
bytes on as if they were the body; answering as if it were plain chunked would let a
proxy and hfgit disagree on where a request ends.
"""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest

from _wire import raw_request
from hubtest import Hub, unique


def _chunked(body: bytes) -> bytes:
    return f"{len(body):x}\r\n".encode() + body + b"\r\n0\r\n\r\n"


def _post(hub: Hub, path: str, coding: str, content_type: str, body: bytes) -> bytes:
    host = urlsplit(hub.url).netloc
    head = (
        f"POST {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n"
        f"Content-Type: {content_type}\r\nTransfer-Encoding: {coding}\r\n\r\n"
    )
    return raw_request(hub.url, head.encode() + _chunked(body), timeout=30)


@pytest.fixture(scope="module")
def repo(hub: Hub) -> str:
    owner = hub.make_user()
    return hub.make_repo(f"{owner}/{unique('te')}").repo_id


@pytest.mark.parametrize("coding", ["gzip, chunked", "deflate, chunked", "GZIP,chunked"])
@pytest.mark.parametrize(
    ("route", "content_type"),
    [
        ("/{repo}/git-upload-pack", "application/x-git-upload-pack-request"),
        ("/{repo}/git-receive-pack", "application/x-git-receive-pack-request"),
        ("/{repo}.git/info/lfs/objects/batch", "application/vnd.git-lfs+json"),
        ("/api/repos/create", "application/json"),
        ("/login", "application/x-www-form-urlencoded"),
    ],
)
def test_stacked_transfer_codings_are_refused(hub: Hub, repo: str, coding, route, content_type):
    answer = _post(hub, route.format(repo=repo), coding, content_type, b'{"name": "x"}')
    status = int(answer.split(b" ", 2)[1])
    assert status == 501, answer[:300]
    assert b"Transfer-Encoding" in answer.split(b"\r\n\r\n", 1)[1]


def test_plain_chunked_still_reaches_the_handler(hub: Hub, repo: str):
    answer = _post(hub, "/api/repos/create", "chunked", "application/json", b'{"name": "x"}')
    assert int(answer.split(b" ", 2)[1]) == 401  # the handler ran: it wants a token
