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
def hub(engine_hub):
    return engine_hub


@pytest.fixture(scope="module")
def target(hub, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("malformed")
    return PushTarget.create(hub, Git(tmp / "home"), tmp)


@pytest.fixture(scope="module")
def push_target(git_hub, tmp_path_factory):
    """For receive-pack alone, which is hfgit's own on every engine: one server is enough."""
    from hubtest import Git

    tmp = tmp_path_factory.mktemp("malformed-push")
    return PushTarget.create(git_hub, Git(tmp / "home"), tmp)


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


DELIM = b"0001"


def _v2(command: str, *args: str, caps: tuple[str, ...] = ("agent=crafted",)) -> bytes:
    body = pkt(f"command={command}\n") + b"".join(pkt(f"{cap}\n") for cap in caps)
    return body + DELIM + b"".join(pkt(f"{arg}\n") for arg in args) + FLUSH


#: Protocol v2 requests git would act on, and must not (or cannot parse).
BAD_V2_BODIES = {
    "unknown command": lambda t: _v2("object-info", "size", f"oid {t.main}"),
    "bundle-uri": lambda t: _v2("bundle-uri"),
    "no command": lambda t: pkt("agent=x\n") + FLUSH,
    "unknown capability": lambda t: _v2("fetch", f"want {t.main}", caps=("frobnicate=1",)),
    "want-ref": lambda t: _v2("fetch", "want-ref refs/heads/main", "done"),
    "packfile-uris": lambda t: _v2("fetch", f"want {t.main}", "packfile-uris https", "done"),
    "sideband-all": lambda t: _v2("fetch", f"want {t.main}", "sideband-all", "done"),
    "sparse filter": lambda t: _v2("fetch", f"want {t.main}", f"filter sparse:oid={t.main}"),
    "combined filter": lambda t: _v2("fetch", f"want {t.main}", "filter combine:blob:none+tree:0"),
    "two filters": lambda t: _v2("fetch", f"want {t.main}", "filter blob:none", "filter tree:0"),
    "want not hex": lambda t: _v2("fetch", "want xyz", "done"),
    "want of nothing": lambda t: _v2("fetch", "want " + "1" * 40, "done"),
    "have garbage": lambda t: _v2("fetch", f"want {t.main}", "have xyz", "done"),
    "deepen zero": lambda t: _v2("fetch", f"want {t.main}", "deepen 0", "done"),
    "deepen huge": lambda t: _v2("fetch", f"want {t.main}", "deepen 99999999999", "done"),
    "deepen-since word": lambda t: _v2("fetch", f"want {t.main}", "deepen-since soon", "done"),
    "deepen-not space": lambda t: _v2("fetch", f"want {t.main}", "deepen-not a b", "done"),
    "ls-refs argument": lambda t: _v2("ls-refs", "peel", "frobnicate"),
    "missing flush": lambda t: _v2("fetch", f"want {t.main}", "done")[:-4],
    "data after the end": lambda t: _v2("fetch", f"want {t.main}", "done") + _v2("ls-refs"),
    "response-end": lambda t: _v2("fetch", f"want {t.main}", "done")[:-4] + b"0002",
    "uppercase length": lambda t: b"0012COMMAND=FETCH\n" + FLUSH,
    "empty packet": lambda t: pkt("command=fetch\n") + b"0004" + FLUSH,
}


@pytest.mark.parametrize("name", sorted(BAD_V2_BODIES))
def test_malformed_protocol_v2_request(target, name):
    body = BAD_V2_BODIES[name](target)
    answer = post(target.url, UPLOAD, body, target.token, headers={"Git-Protocol": "version=2"})
    assert answer.status != 500
    assert _refused(answer), (answer.status, answer.body[:200])
    assert b"PACK" not in answer.body
    _healthy(target)


def test_too_many_ref_prefixes_in_ls_refs(hub, target):
    body = _v2("ls-refs", *["ref-prefix refs/heads/"] * 10_001)
    answer = post(target.url, UPLOAD, body, target.token, headers={"Git-Protocol": "version=2"})
    assert answer.status == 200
    assert b"ERR upload-pack: " in answer.body and b"refs/heads/main" not in answer.body
    if hub.engine == "git":
        assert b"ERR upload-pack: too many wants" in answer.body
    _healthy(target)


@pytest.mark.parametrize("version", ["v0", "v2"])
@pytest.mark.parametrize("limit", ["want", "have", "shallow"])
def test_too_many_lines(hub, target, limit, version):
    """``max_want_lines``/``max_have_lines`` (shallow lines count as haves)."""
    count = 10_001 if limit == "want" else 100_001
    lines = [f"{limit} {target.main}"] * count
    if version == "v2":
        if limit != "want":
            lines.insert(0, f"want {target.main}")
        body = _v2("fetch", *lines, "done")
    elif limit == "have":
        body = pkt(f"want {target.main} {UPLOAD_CAPS}\n") + FLUSH
        body += b"".join(pkt(line + "\n") for line in lines) + pkt("done\n")
    else:
        first = f"want {target.main} {UPLOAD_CAPS} shallow\n"
        body = pkt(first) + b"".join(pkt(line + "\n") for line in lines) + FLUSH
    headers = {"Git-Protocol": "version=2"} if version == "v2" else {}
    answer = post(target.url, UPLOAD, body, target.token, headers=headers)
    assert answer.status == 200
    what = "wants" if limit == "want" else "haves"
    if hub.engine == "dulwich" and version == "v2":  # no v2 there: refused as a whole
        assert b"ERR upload-pack: " in answer.body
    else:
        assert f"ERR upload-pack: too many {what}".encode() in answer.body
    _healthy(target)


def _refs_with_git_protocol(target, header: str) -> bytes:
    head = request_head(
        "GET",
        target.url,
        f"/info/refs?service={UPLOAD}",
        target.token,
        {"Git-Protocol": header, "Connection": "close"},
    )
    return raw_request(target.url, head)


def test_git_protocol_version_2(hub, target):
    response = _refs_with_git_protocol(target, "version=2")
    assert response.startswith(b"HTTP/1.1 200 ")
    if hub.engine == "git":
        assert b"version 2\n" in response and b"ls-refs" in response
    else:  # dulwich speaks v0; git falls back by itself
        assert f"{target.main} refs/heads/main".encode() in response


@pytest.mark.parametrize("header", ["version=2:frobnicate=1", "version=3", "Version=2", "2"])
def test_other_git_protocol_values_get_protocol_v0(target, header):
    """Only ``version=2`` exactly reaches git; anything else is a v0 client."""
    response = _refs_with_git_protocol(target, header)
    assert response.startswith(b"HTTP/1.1 200 ")
    assert b"version 2" not in response
    assert f"{target.main} refs/heads/main".encode() in response


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
def test_malformed_receive_pack_request(push_target, name):
    target = push_target
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
