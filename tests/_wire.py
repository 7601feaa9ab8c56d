"""Crafted smart-HTTP requests for the push and protocol tests.

Objects and packs are made by the real git plumbing (``hash-object --literally``,
``mktree``, ``commit-tree``, ``pack-objects``); the requests go over a plain HTTP
connection so that tests can send what git itself never would.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import socket
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from hfgit.names import RepoId
from hubtest import Git, Hub, basic_auth, http_request, unique

ZERO = "0" * 40
RECEIVE_CAPS = "report-status side-band-64k ofs-delta agent=crafted"
UPLOAD_CAPS = "multi_ack_detailed side-band-64k thin-pack ofs-delta agent=crafted"


def pkt(data: bytes | str) -> bytes:
    if isinstance(data, str):
        data = data.encode()
    return f"{len(data) + 4:04x}".encode() + data


FLUSH = b"0000"


def read_pkts(data: bytes) -> list[bytes | None]:
    """Split a pkt-line stream; side-band data (channel 1) is unwrapped one level."""
    out: list[bytes | None] = []
    pos = 0
    while pos + 4 <= len(data):
        size = int(data[pos : pos + 4], 16)
        if size == 0:
            out.append(None)
            pos += 4
            continue
        out.append(data[pos + 4 : pos + size])
        pos += size
    return out


def report_status(body: bytes) -> dict[str, str]:
    """``{"unpack": "ok", "refs/heads/main": "ok" | "ng <reason>"}`` from a response."""
    lines: list[bytes] = []
    for packet in read_pkts(body):
        if packet and packet[:1] == b"\x01":
            lines.extend(p for p in read_pkts(packet[1:]) if p)
        elif packet and packet[:1] not in (b"\x02", b"\x03"):
            lines.append(packet)
    result: dict[str, str] = {}
    for line in lines:
        text = line.decode().rstrip("\n")
        if text.startswith("unpack "):
            result["unpack"] = text[len("unpack ") :]
        elif text.startswith("ok "):
            result[text[3:]] = "ok"
        elif text.startswith("ng "):
            ref, _, reason = text[3:].partition(" ")
            result[ref] = "ng " + reason
    return result


def progress_text(body: bytes) -> str:
    """What git would print as ``remote:`` lines (side-band channel 2)."""
    return "".join(
        p[1:].decode("utf-8", "replace") for p in read_pkts(body) if p and p[:1] == b"\x02"
    )


@dataclass
class Response:
    status: int
    headers: dict[str, str]
    body: bytes


def post(
    url: str,
    service: str,
    body: bytes,
    token: str | None,
    *,
    headers: dict[str, str] | None = None,
    chunked: bool = False,
) -> Response:
    """One POST to ``<url>/<service>``; the token goes in a Basic header, never a URL."""
    parts = urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
    all_headers = {"Content-Type": f"application/x-{service}-request"}
    if token is not None:
        all_headers["Authorization"] = basic_auth(token)
    all_headers.update(headers or {})
    try:
        if chunked:
            conn.request(
                "POST", f"{parts.path}/{service}", iter([body]), all_headers, encode_chunked=True
            )
        else:
            conn.request("POST", f"{parts.path}/{service}", body, all_headers)
        answer = conn.getresponse()
        return Response(answer.status, dict(answer.headers), answer.read())
    finally:
        conn.close()


def request_head(
    method: str, url: str, suffix: str, token: str | None, headers: Mapping[str, str]
) -> bytes:
    """The head of a request to ``url + suffix``, written by hand so tests can bend it."""
    parts = urlsplit(url)
    lines = [f"{method} {parts.path}{suffix} HTTP/1.1", f"Host: {parts.netloc}"]
    if token is not None:
        lines.append(f"Authorization: {basic_auth(token)}")
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def raw_request(url: str, request: bytes, timeout: float = 60) -> bytes:
    """Send bytes as they are (bad headers and all); return whatever comes back."""
    parts = urlsplit(url)
    with socket.create_connection((parts.hostname, parts.port), timeout=timeout) as sock:
        sock.sendall(request)
        chunks = []
        while True:
            try:
                data = sock.recv(65536)
            except (ConnectionResetError, TimeoutError):
                break
            if not data:
                break
            chunks.append(data)
        return b"".join(chunks)


def advertised(url: str, service: str, token: str | None) -> dict[str, str]:
    """Refs from ``info/refs`` as ``{name: sha}``."""
    status, _, body = http_request("GET", f"{url}/info/refs?service={service}", token=token)
    assert status == 200, body
    refs = {}
    for packet in read_pkts(body):
        if not packet or packet.startswith(b"#"):
            continue
        line = packet.split(b"\0", 1)[0].decode().rstrip("\n")
        sha, _, name = line.partition(" ")
        if sha != ZERO:
            refs[name] = sha
    return refs


class Plumbing:
    """A scratch repository where tests make objects and packs with git's own tools."""

    def __init__(self, git: Git, path: Path) -> None:
        self.git = git
        self.path = path
        git.run("init", "-q", "--bare", str(path))

    def run(self, *args: str, input: bytes | None = None) -> bytes:
        result = subprocess.run(
            ["git", *args],
            cwd=self.path,
            input=input,
            capture_output=True,
            env={**self.git.env, "GIT_DIR": str(self.path)},
            timeout=120,
            check=False,
        )
        if result.returncode != 0:
            raise AssertionError(f"git {args[0]} failed: {result.stderr.decode()}")
        return result.stdout

    def blob(self, data: bytes) -> str:
        return self.run("hash-object", "-w", "--stdin", input=data).decode().strip()

    def literal(self, kind: str, data: bytes) -> str:
        """An object git itself would refuse to make (``--literally``)."""
        return (
            self.run("hash-object", "-w", "--literally", "-t", kind, "--stdin", input=data)
            .decode()
            .strip()
        )

    def tree(self, entries: list[tuple[str, str, str]]) -> str:
        """``entries`` = (mode, sha, name); written raw, so any name goes."""
        raw = b""
        for mode, sha, name in sorted(entries, key=lambda e: e[2]):
            raw += mode.encode() + b" " + name.encode() + b"\0" + bytes.fromhex(sha)
        return self.literal("tree", raw)

    def commit(self, tree: str, parents: tuple[str, ...] = (), message: str = "c") -> str:
        args = ["commit-tree", tree]
        for parent in parents:
            args += ["-p", parent]
        return self.run(*args, "-m", message).decode().strip()

    def commit_files(
        self, files: Mapping[str, bytes], parents: tuple[str, ...] = ()
    ) -> tuple[str, list[str]]:
        """A commit whose tree holds exactly ``files``; it and every object it adds."""
        blobs = [(name, self.blob(data)) for name, data in files.items()]
        tree = self.tree([("100644", sha, name) for name, sha in blobs])
        commit = self.commit(tree, parents)
        return commit, [commit, tree, *(sha for _, sha in blobs)]

    def pack(self, objects: list[str]) -> bytes:
        """A pack of exactly ``objects`` (no closure: missing ones stay missing)."""
        listing = "".join(f"{sha}\n" for sha in objects).encode()
        return self.run("pack-objects", "--stdout", input=listing)


def push_body(commands: list[tuple[str, str, str]], pack: bytes, caps: str = RECEIVE_CAPS) -> bytes:
    lines = b""
    for index, (old, new, ref) in enumerate(commands):
        line = f"{old} {new} {ref}"
        if index == 0:
            line += "\0" + caps
        lines += pkt(line + "\n")
    return lines + FLUSH + pack


def snapshot(path: Path) -> dict[str, str]:
    """Every file and directory under ``path`` with a digest of its bytes."""
    result = {}
    for root, dirs, files in os.walk(path):
        for name in dirs:
            result[os.path.relpath(os.path.join(root, name), path) + "/"] = "dir"
        for name in files:
            full = os.path.join(root, name)
            result[os.path.relpath(full, path)] = hashlib.sha256(
                Path(full).read_bytes()
            ).hexdigest()
    return result


@dataclass
class PushTarget:
    """A fresh repo on the hub with one commit on ``main``, its owner's token and disk path."""

    hub: Hub
    rid: RepoId
    token: str
    url: str
    path: Path
    main: str

    @classmethod
    def create(cls, hub: Hub, git: Git, tmp_path: Path) -> PushTarget:
        user = hub.make_user()
        rid = hub.make_repo(f"{user}/{unique('r')}")
        token = hub.make_token(user)
        url = hub.repo_url(rid)
        work = git.init_worktree(tmp_path / unique("w"), {"README.md": "seed\n"})
        git.run("push", "-q", url, "main", cwd=work, token=token)
        record = hub.accounts.repos.get(rid)
        path = hub.accounts.repos.path(record)
        main = git.run("rev-parse", "HEAD", cwd=work).stdout.strip()
        return cls(hub, rid, token, url, path, main)

    def plumbing(self, git: Git, tmp_path: Path) -> Plumbing:
        """A scratch repository holding what the server has on ``main``."""
        scratch = Plumbing(git, tmp_path / unique("plumb"))
        git.run(
            "--git-dir", str(scratch.path), "fetch", "-q", self.url, "main:main", token=self.token
        )
        return scratch

    def push(self, commands, pack: bytes, caps: str = RECEIVE_CAPS, **kw) -> Response:
        return post(self.url, "git-receive-pack", push_body(commands, pack, caps), self.token, **kw)

    def refs(self) -> dict[str, str]:
        return advertised(self.url, "git-receive-pack", self.token)
