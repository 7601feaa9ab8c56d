"""Property-based fuzzing of every route of a running server (Hypothesis).

The routes come from :data:`hfgit.server.routes.URL_MAP`, so a rule added later is
fuzzed too. Each example is one raw HTTP request, written byte by byte: a method, a
path filled from the rule's converters (valid values of repositories, tokens and LFS
objects made for the run, and invalid ones), headers (``Content-Type``,
``Content-Encoding``, ``Content-Length``, ``Transfer-Encoding``, ``Authorization``,
``Git-Protocol``) and a generated or mutated body. The properties: no answer is a 5xx
and every request gets an answer; the server stays up; no repository changes (every
credential the fuzzer holds can read at most, so any change would be a bug).

The run is bounded and reproducible: a fixed ``max_examples`` per route, no deadline,
``derandomize=True`` and no example database, so CI tries the same inputs every time.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
import socket
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _wire import FLUSH, UPLOAD_CAPS, pkt, snapshot
from hfgit.names import RepoId
from hfgit.server.routes import URL_MAP
from hubtest import Git, Hub, basic_auth, http_request, running_hub, unique

#: Examples per route and method: about 3,300 requests in all, a minute or two on 2 cores.
EXAMPLES = 100
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
ZERO = "0" * 40


@dataclass
class World:
    """What the fuzzer knows: a server, its repositories, and credentials that read at most."""

    hub: Hub
    repos: list[RepoId]
    shas: list[str]
    oid: str
    token_ids: list[str]
    credentials: list[str | None]
    before: dict[str, dict[str, str]]


def _all_storage(hub: Hub) -> dict[str, dict[str, str]]:
    """Every file of every repository's storage and of the LFS store, with its digest."""
    state = {"repos": snapshot(hub.data_dir / "repos")}
    lfs = hub.data_dir / "lfs"
    state["lfs"] = snapshot(lfs) if lfs.exists() else {}
    return state


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Iterator[World]:
    tmp = tmp_path_factory.mktemp("fuzz")
    with running_hub(tmp / "data") as hub:
        git = Git(tmp / "home")
        owner, stranger = hub.make_user(), hub.make_user()
        org = hub.make_org(members={owner: "admin"})
        public = hub.make_repo(f"{owner}/{unique('pub')}")
        private = hub.make_repo(f"{owner}/{unique('priv')}", private=True)
        dataset = hub.make_repo(f"{org}/{unique('ds')}", type="dataset")
        gated = hub.make_repo(f"{owner}/{unique('gated')}", gated="auto")
        write = hub.make_token(owner, "write")
        work = git.init_worktree(tmp / "w", {"README.md": "seed\n", "a/b.txt": "x" * 100})
        for repo in (public, private, dataset, gated):
            git.run("push", "-q", hub.repo_url(repo), "main", cwd=work, token=write)
        head = git.run("rev-parse", "HEAD", cwd=work).stdout.strip()
        tree = git.run("rev-parse", "HEAD^{tree}", cwd=work).stdout.strip()
        read = hub.make_token(owner, "read")
        fine = hub.make_token(
            owner, "fineGrained", scopes=[f"model:{public.repo_id}=repo.content.read"]
        )
        stranger_write = hub.make_token(stranger, "write")
        dead_name = unique("dead")
        dead = hub.make_token(stranger, "read", name=dead_name)
        hub.accounts.tokens.delete(stranger, dead_name)
        credentials: list[str | None] = [
            None,
            basic_auth(read),
            f"Bearer {read}",
            basic_auth(fine),
            basic_auth(stranger_write),
            f"Bearer {stranger_write}",
            basic_auth(dead),
            basic_auth(dead[:-1] + ("a" if dead[-1] != "a" else "b")),
            basic_auth("hf_" + "A" * 34),
            basic_auth("api_org_" + "x" * 30),
            basic_auth("a password"),
            "Basic !!!not-base64!!!",
            "Basic " + base64.b64encode(b"no-colon").decode(),
            "Basic ",
            "Bearer",
            "Bearer " + "hf_" + "é" * 10,
            "Negotiate abc",
            "Basic " + "A" * 5000,
        ]
        token_ids = [str(row.id) for row in hub.accounts.tokens.list(owner)][:2]
        world = World(
            hub=hub,
            repos=[public, private, dataset, gated, RepoId.parse(f"{owner}/missing")],
            shas=[head, tree, ZERO, "f" * 40],
            oid="a" * 64,
            token_ids=token_ids,
            credentials=credentials,
            before=_all_storage(hub),
        )
        yield world


# Filling a rule's converters

_ARGUMENT = re.compile(r"<(?:(?P<converter>\w+)(?:\((?P<options>[^)]*)\))?:)?(?P<name>\w+)>")
_JUNK_SEGMENT = st.sampled_from(
    ["", ".", "..", "%2e%2e", "a%2Fb", "x" * 300, "é", "%00", "%ff", "a b", "-x", "x.git", "~"]
) | st.text(alphabet=st.characters(codec="utf-8", exclude_characters="/?#"), max_size=20)


def _values(
    world: World, converter: str | None, options: str | None, valid_only: bool
) -> st.SearchStrategy[str]:
    """Strings for one converter: mostly valid for the run, sometimes not."""
    repos = world.repos
    if converter == "repo":
        valid = st.sampled_from([r.url_path for r in repos] + [f"{r.url_path}.git" for r in repos])
        invalid = st.builds(lambda a, b: f"{a}/{b}", _JUNK_SEGMENT, _JUNK_SEGMENT)
    elif converter == "api_repo":
        valid = st.sampled_from([f"{r.type}s/{r.repo_id}" for r in repos])
        invalid = st.builds(
            lambda t, a, b: f"{t}/{a}/{b}",
            st.sampled_from(["models", "datasets", "spaces"]),
            _JUNK_SEGMENT,
            _JUNK_SEGMENT,
        )
    elif converter == "int":
        valid = st.sampled_from(world.token_ids or ["1"])
        invalid = st.sampled_from(["0", "-1", "99999999999999999999999", "1e3", "\u0661"])
    elif converter == "any":
        valid = st.sampled_from([option.strip() for option in (options or "").split(",")])
        invalid = _JUNK_SEGMENT
    elif converter == "lfs_oid":
        valid = st.sampled_from([world.oid, "0" * 64])
        invalid = st.sampled_from(["A" * 64, "a" * 63, "g" * 64])
    else:
        valid = st.sampled_from(["style.css", "x", "1"])
        invalid = _JUNK_SEGMENT
    return valid if valid_only else st.one_of(valid, invalid)


@st.composite
def _path(draw, world: World, template: str, valid: bool) -> str:
    def fill(match: re.Match) -> str:
        return draw(_values(world, match["converter"], match["options"], valid))

    path = _ARGUMENT.sub(fill, template)
    path = path.replace(" ", "%20")
    query = draw(
        st.sampled_from(
            [
                "",
                "",
                "?service=git-upload-pack",
                "?service=git-receive-pack",
                "?service=git-upload-archive",
                "?expires=1&signature=x&token=1",
                "?expires=99999999999&signature=&token=",
                "?path=a&limit=10&cursor=1&refspec=refs/heads/main",
                "?limit=-1",
                "?%ff=%ff",
            ]
        )
    )
    return path + query


# Bodies


def _pkt_lines(world: World) -> st.SearchStrategy[bytes]:
    sha = st.sampled_from(world.shas)
    special = st.sampled_from(
        [FLUSH, b"0001", b"0002", b"0004", b"0003", pkt("done\n"), pkt("command=ls-refs")]
    )
    line = st.one_of(
        st.builds(lambda s: pkt(f"want {s} {UPLOAD_CAPS}\n"), sha),
        st.builds(lambda s: pkt(f"want {s}\n"), sha),
        st.builds(lambda s: pkt(f"have {s}\n"), sha),
        st.builds(lambda s: pkt(f"shallow {s}\n"), sha),
        st.builds(lambda n: pkt(f"deepen {n}\n"), st.integers(-5, 2**40)),
        st.builds(
            lambda a, b: pkt(f"{a} {b} refs/heads/main\0report-status side-band-64k\n"), sha, sha
        ),
        st.builds(lambda a, b: pkt(f"{a} {b} refs/heads/x\n"), sha, sha),
        special,
        special,
        special,
        st.builds(pkt, st.binary(max_size=80)),
        st.binary(max_size=12),
    )
    return st.lists(line, max_size=12).map(b"".join)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(
            st.sampled_from(["operation", "objects", "oid", "size", "transfers", "ref", "name"])
            | st.text(max_size=8),
            children,
            max_size=5,
        )
    ),
    max_leaves=20,
)


def _valid_bodies(world: World) -> list[bytes]:
    head = world.shas[0]
    return [
        pkt(f"want {head} {UPLOAD_CAPS}\n") + FLUSH + pkt("done\n"),
        pkt(f"{ZERO} {head} refs/heads/fuzz\0report-status side-band-64k\n") + FLUSH,
        json.dumps({"operation": "download", "objects": [{"oid": world.oid, "size": 1}]}).encode(),
        json.dumps({"operation": "upload", "objects": [{"oid": world.oid, "size": 1}]}).encode(),
        json.dumps({"path": "a/b.txt", "ref": {"name": "refs/heads/main"}}).encode(),
        json.dumps({"name": "x", "type": "model", "private": True}).encode(),
        b"username=a&password=b&csrf_token=x",
    ]


@st.composite
def _mutated(draw, world: World) -> bytes:
    data = bytearray(draw(st.sampled_from(_valid_bodies(world))))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "cut", "insert", "delete"]))
        at = draw(st.integers(0, len(data)))
        if kind == "flip" and at < len(data):
            data[at] = draw(st.integers(0, 255))
        elif kind == "cut":
            del data[at:]
        elif kind == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=8))
        elif at < len(data):
            del data[at]
    return bytes(data)


def _bodies(world: World) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.just(b""),
        st.binary(max_size=512),
        _pkt_lines(world),
        _JSON.map(lambda value: json.dumps(value).encode()),
        st.sampled_from(_valid_bodies(world)),
        _mutated(world),
        st.sampled_from([b"[" * 5000, b'{"a":' * 3000, b"1," * 6000, b'"' + b'\\"' * 2000]),
    )


CONTENT_TYPES = [
    None,
    "application/x-git-upload-pack-request",
    "application/x-git-receive-pack-request",
    "application/vnd.git-lfs+json",
    "application/json",
    "application/x-www-form-urlencoded",
    "multipart/form-data; boundary=x",
    "multipart/form-data",
    "text/plain; charset=utf-32",
    "application/json; charset=latin-1",
    ";;;",
]


def _fitting_content_type(template: str) -> str | None:
    """The content type the route's clients send, so most bodies get past that check."""
    for service in ("git-upload-pack", "git-receive-pack"):
        if template.endswith(service):
            return f"application/x-{service}-request"
    if "/info/lfs/" in template:
        return "application/vnd.git-lfs+json"
    if template.startswith("/api/"):
        return "application/json"
    return "application/x-www-form-urlencoded"


@dataclass
class Request:
    method: str
    path: str
    headers: list[tuple[str, str]]
    body: bytes
    framing: str

    def __repr__(self) -> str:  # what Hypothesis prints for a failing example
        heads = ", ".join(f"{k}: {v[:60]}" for k, v in self.headers)
        return f"{self.method} {self.path} [{heads}] {self.framing} body={self.body[:120]!r}"


#: What one example may bend; the rest of the request is what a real client sends, so
#: the bent part reaches the code behind the checks the others pass.
DIMENSIONS = ["method", "path", "credential", "content-type", "encoding", "framing", "headers"]


@st.composite
def _requests(draw, world: World, template: str, methods: list[str]) -> Request:
    bend = set(draw(st.lists(st.sampled_from(DIMENSIONS), max_size=2)))
    method = draw(st.sampled_from(methods))
    if "method" in bend:
        method = draw(st.sampled_from(["GET", "POST", "PUT", "PATCH", "DELETE", "BREW"]))
    path = draw(_path(world, template, valid="path" not in bend))
    body = draw(_pkt_lines(world) if "/git-" in template else _bodies(world))
    headers: list[tuple[str, str]] = []
    read_token = st.sampled_from(world.credentials[1:3])
    credential = draw(st.sampled_from(world.credentials) if "credential" in bend else read_token)
    if credential is not None:
        headers.append(("Authorization", credential))
    fitting = _fitting_content_type(template)
    content_type = draw(st.sampled_from(CONTENT_TYPES)) if "content-type" in bend else fitting
    if content_type is not None:
        headers.append(("Content-Type", content_type))
    encoding = None
    if "encoding" in bend:
        encoding = draw(st.sampled_from(["gzip", "x-gzip", "identity", "deflate", "br"]))
    elif draw(st.integers(0, 4)) == 0:
        encoding, body = "gzip", gzip.compress(body)
    if encoding is not None:
        if encoding in ("gzip", "x-gzip") and draw(st.booleans()):
            body = gzip.compress(body)
        elif encoding == "deflate":
            body = zlib.compress(body)
        headers.append(("Content-Encoding", encoding))
    protocol = draw(st.sampled_from([None, "version=2", "version=1", "version=0", "x" * 100]))
    if protocol is not None:
        headers.append(("Git-Protocol", protocol))
    framing = draw(st.sampled_from(["length", "chunked"]))
    if "framing" in bend:
        framing = draw(
            st.sampled_from(["short", "long", "none", "chunked", "bad-chunk", "chunk-no-end"])
        )
    if "headers" in bend:
        headers.append(
            draw(
                st.sampled_from(
                    [
                        ("Transfer-Encoding", "gzip, chunked"),
                        ("Transfer-Encoding", "identity"),
                        ("Content-Length", "abc"),
                        ("Expect", "100-continue"),
                        ("Cookie", "hfgit_session=x; csrf=y"),
                        ("X-Forwarded-For", "1.2.3.4"),
                        ("Accept", "application/vnd.git-lfs+json"),
                    ]
                )
            )
        )
    return Request(method, path, headers, body, framing)


def _encode(request: Request, host: str) -> bytes:
    lines = [f"{request.method} {request.path} HTTP/1.1", f"Host: {host}", "Connection: close"]
    lines += [f"{name}: {value}" for name, value in request.headers]
    body = request.body
    if request.framing == "chunked":
        lines.append("Transfer-Encoding: chunked")
        body = (f"{len(body):x}\r\n".encode() + body + b"\r\n" if body else b"") + b"0\r\n\r\n"
    elif request.framing == "bad-chunk":  # a chunk size that is no hex, or lies
        lines.append("Transfer-Encoding: chunked")
        body = f"{len(body) + 7:x}\r\n".encode() + body + b"\r\nzz\r\n\r\n"
    elif request.framing == "chunk-no-end":  # the half-close comes before the last chunk
        lines.append("Transfer-Encoding: chunked")
        body = f"{len(body):x}\r\n".encode() + body
    elif request.framing == "short":  # declares less than it sends
        lines.append(f"Content-Length: {len(body) // 2}")
    elif request.framing == "long":  # declares more; the half-close ends the body
        lines.append(f"Content-Length: {len(body) + 10}")
    elif request.framing == "length":
        lines.append(f"Content-Length: {len(body)}")
    head = "\r\n".join(lines).encode("utf-8") + b"\r\n\r\n"
    return head + body


def _send(url: str, data: bytes) -> bytes:
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=90) as sock:
        sock.sendall(data)
        sock.shutdown(socket.SHUT_WR)
        chunks = []
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            chunks.append(chunk)
    return b"".join(chunks)


def _status(answer: bytes) -> int | None:
    match = re.match(rb"HTTP/1\.[01] (\d{3}) ", answer)
    return int(match[1]) if match else None


def _check(world: World, request: Request) -> None:
    hub = world.hub
    answer = _send(hub.url, _encode(request, urlsplit(hub.url).netloc))
    status = _status(answer)
    assert status is not None, f"no answer to {request!r}: {answer[:200]!r}"
    if status == 501 and any(name == "Transfer-Encoding" for name, _ in request.headers):
        return  # a transfer coding we do not implement: 501, as RFC 9112 says
    assert status < 500, f"{status} for {request!r}: {answer[:300]!r}"


def _routes() -> list[tuple[str, list[str]]]:
    routes = []
    for rule in URL_MAP.iter_rules():
        methods = sorted((rule.methods or set()) - {"HEAD", "OPTIONS"})
        routes.append((rule.rule, methods))
    return routes


ROUTES = _routes()


@pytest.mark.parametrize(("template", "methods"), ROUTES, ids=[r for r, _ in ROUTES])
def test_route_answers_every_input_without_a_5xx(world: World, template: str, methods: list[str]):
    @FUZZ
    @given(request=_requests(world, template, methods))
    def run(request: Request) -> None:
        _check(world, request)

    run()
    assert http_request("GET", f"{world.hub.url}/healthz")[0] == 200


def test_paths_outside_the_table(world: World):
    segment = _JUNK_SEGMENT | st.sampled_from(["api", "datasets", "info", "lfs", "settings"])
    paths = st.lists(segment, min_size=1, max_size=6).map(lambda parts: "/" + "/".join(parts))

    @FUZZ
    @given(path=paths, method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "BREW"]))
    def run(path: str, method: str) -> None:
        path = path.replace(" ", "%20")
        _check(world, Request(method, path, [], b"", "length"))

    run()


def test_after_fuzzing_the_server_is_up_and_nothing_changed(world: World):
    """Runs last in this module: the repositories and LFS store are as they were."""
    hub = world.hub
    assert http_request("GET", f"{hub.url}/healthz")[0] == 200
    assert hub.process is not None and hub.process.poll() is None
    assert _all_storage(hub) == world.before
    log = Path(hub.log).read_text(errors="replace")
    assert "Traceback" not in log
    assert "WORKER TIMEOUT" not in log
