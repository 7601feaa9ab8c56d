"""Malformed requests get a 4xx or an in-protocol ``ERR``/``ng``, never a 500."""

from __future__ import annotations

import gzip
import zlib

import pytest

from _wire import FLUSH, UPLOAD_CAPS, PushTarget, pkt, post, raw_request, read_pkts, request_head
from hubtest import Git, worker_memory

UPLOAD = "git-upload-pack"
RECEIVE = "git-receive-pack"


@pytest.fixture(scope="module")
def target(hub, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("malformed")
    return PushTarget.create(hub, Git(tmp / "home"), tmp)


def _healthy(target) -> None:
    """The server still answers a real request after the bad one."""
    answer = post(target.url, UPLOAD, FLUSH, target.token)
    assert answer.status == 200


def _refused(answer) -> bool:
    if 400 <= answer.status < 500:
        return True
    packets = read_pkts(answer.body) if answer.status == 200 else []
    return any(p and (p.startswith(b"ERR ") or b"ng " in p or b"unpack " in p) for p in packets)


BAD_UPLOAD_BODIES = {
    "not pkt-line": b"hello world",
    "bad length": b"zzzzwant",
    "short length": b"0002",
    "length past end": b"00ffwant ",
    "unknown command": pkt("fetch everything\n") + FLUSH,
    "want not hex": pkt("want xyz multi_ack\n") + FLUSH,
    "deepen word": lambda t: (
        pkt(f"want {t.main} side-band-64k thin-pack ofs-delta shallow\n")
        + pkt("deepen many\n")
        + FLUSH
    ),
    "deepen negative": lambda t: (
        pkt(f"want {t.main} side-band-64k thin-pack ofs-delta shallow\n")
        + pkt("deepen -5\n")
        + FLUSH
    ),
    "deepen huge": lambda t: (
        pkt(f"want {t.main} side-band-64k thin-pack ofs-delta shallow\n")
        + pkt("deepen 99999999999999999999\n")
        + FLUSH
    ),
    "deepen zero": lambda t: (
        pkt(f"want {t.main} side-band-64k thin-pack ofs-delta shallow\n")
        + pkt("deepen 0\n")
        + FLUSH
    ),
    "unknown capability": lambda t: pkt(f"want {t.main} frobnicate\n") + FLUSH,
    "have garbage": lambda t: (
        pkt(f"want {t.main} side-band-64k thin-pack ofs-delta\n")
        + FLUSH
        + pkt("have \xff\xfe\n")
        + pkt("done\n")
    ),
    "non-ascii": "want é\n".encode() * 3,
}


@pytest.mark.parametrize("name", sorted(BAD_UPLOAD_BODIES))
def test_malformed_upload_pack_request(target, name):
    body = BAD_UPLOAD_BODIES[name]
    body = body(target) if callable(body) else body
    answer = post(target.url, UPLOAD, body, target.token)
    assert answer.status != 500
    assert _refused(answer), (answer.status, answer.body[:200])
    _healthy(target)


BAD_RECEIVE_BODIES = {
    "not pkt-line": b"hello world",
    "bad length": b"zzzz",
    "short command": pkt("0000 refs/heads/main\n") + FLUSH,
    "sha not hex": pkt("x" * 40 + " " + "y" * 40 + " refs/heads/main\0report-status\n") + FLUSH,
    "unknown capability": lambda t: pkt(f"{t.main} {t.main} refs/heads/main\0frobnicate\n") + FLUSH,
    "garbage pack": lambda t: (
        pkt(f"{t.main} {'1' * 40} refs/heads/main\0report-status\n")
        + FLUSH
        + b"PACK\x00\x00\x00\x02\xff\xff\xff\xffgarbage"
    ),
    "not a pack": lambda t: (
        pkt(f"{t.main} {'1' * 40} refs/heads/main\0report-status\n")
        + FLUSH
        + b"this is not a pack at all"
    ),
    # One object each, cut or bent where git would never cut or bend it.
    "pack ends inside an object header": lambda t: _one_object_push(t, b"\x95\x80"),
    "endless object header": lambda t: _one_object_push(t, b"\xb5" + b"\xff" * 64 + b"\x01"),
    "unknown object type": lambda t: _one_object_push(t, b"\x51" + zlib.compress(b"x")),
    "delta base before the pack": lambda t: _one_object_push(
        t, b"\x61\x7f" + zlib.compress(b"\x01\x01\x01x")
    ),
    "stream shorter than declared": lambda t: _one_object_push(
        t, b"\x3f" + zlib.compress(b"short")
    ),
}


def _one_object_push(target, entry: bytes) -> bytes:
    """A push whose pack holds ``entry`` as its one object, with a correct trailer."""
    import hashlib

    pack = b"PACK\x00\x00\x00\x02\x00\x00\x00\x01" + entry
    pack += hashlib.sha1(pack, usedforsecurity=False).digest()
    return pkt(f"{target.main} {'1' * 40} refs/heads/main\0report-status\n") + FLUSH + pack


@pytest.mark.parametrize("name", sorted(BAD_RECEIVE_BODIES))
def test_malformed_receive_pack_request(target, name):
    body = BAD_RECEIVE_BODIES[name]
    body = body(target) if callable(body) else body
    before = target.refs()
    answer = post(target.url, RECEIVE, body, target.token)
    assert answer.status != 500
    assert _refused(answer), (answer.status, answer.body[:200])
    assert target.refs() == before
    _healthy(target)


@pytest.mark.parametrize("service", ["git-upload-archive", "git-upl%C3%B6ad-pack", "x" * 300])
def test_unknown_or_non_ascii_service_is_refused(target, service):
    head = request_head(
        "GET", target.url, f"/info/refs?service={service}", target.token, {"Connection": "close"}
    )
    response = raw_request(target.url, head)
    status = int(response.split(b" ", 2)[1])
    assert 400 <= status < 500
    _healthy(target)


def _raw_post(target, service: str, headers: dict[str, str], body: bytes) -> int:
    head = request_head(
        "POST",
        target.url,
        f"/{service}",
        target.token,
        {"Connection": "close", "Content-Type": f"application/x-{service}-request", **headers},
    )
    response = raw_request(target.url, head + body, timeout=30)
    return int(response.split(b" ", 2)[1]) if response else 0


@pytest.mark.parametrize("service", [UPLOAD, RECEIVE])
def test_body_longer_than_content_length(target, service):
    body = FLUSH + b"0" * 5000
    status = _raw_post(target, service, {"Content-Length": "4"}, body)
    assert status != 500
    _healthy(target)


@pytest.mark.parametrize("service", [UPLOAD, RECEIVE])
def test_conflicting_content_length_and_transfer_encoding(target, service):
    body = b"4\r\n0000\r\n0\r\n\r\n"
    status = _raw_post(
        target, service, {"Content-Length": "4", "Transfer-Encoding": "chunked"}, body
    )
    assert 400 <= status < 500
    _healthy(target)


def _gzip_bomb(prefix: bytes, line: bytes, size: int) -> bytes:
    """``prefix`` then ``line`` repeated up to ``size`` bytes, gzipped (about 1000:1)."""
    compressor = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    block = line * (1024 * 1024 // len(line))
    parts = [compressor.compress(prefix)]
    parts += [compressor.compress(block) for _ in range(size // len(block))]
    return b"".join(parts) + compressor.flush()


def _worker_rss(hub) -> int:
    """Largest resident size (bytes) among the server's worker processes."""
    return max(worker_memory(hub, "VmRSS"), default=0)


@pytest.mark.parametrize("service", [UPLOAD, RECEIVE])
def test_gzip_bomb_is_cut_off_at_the_limit(hub, target, service):
    if service == UPLOAD:
        prefix = pkt(f"want {target.main} {UPLOAD_CAPS}\n") + FLUSH
        line = pkt(f"have {target.main}\n")
    else:
        prefix = pkt(f"{target.main} {target.main} refs/heads/a\0report-status\n")
        line = pkt(f"{target.main} {target.main} refs/heads/a\n")
    bomb = _gzip_bomb(prefix, line, 1024 * 1024 * 1024)
    assert len(bomb) < 8 * 1024 * 1024
    answer = post(target.url, service, bomb, target.token, headers={"Content-Encoding": "gzip"})
    assert answer.status in (200, 400, 413)
    if answer.status == 200:
        assert b"ERR " in answer.body
    # Bounded: far below what the bomb would inflate to.
    assert _worker_rss(hub) < 512 * 1024 * 1024
    _healthy(target)


def test_gzip_of_a_normal_request_still_works(target):
    body = gzip.compress(
        pkt(f"want {target.main} side-band-64k thin-pack ofs-delta\n") + FLUSH + pkt("done\n")
    )
    answer = post(target.url, UPLOAD, body, target.token, headers={"Content-Encoding": "gzip"})
    assert answer.status == 200
    assert b"PACK" in answer.body
