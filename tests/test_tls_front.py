"""The TLS front of examples/nginx/hfgit.conf, run by Debian's nginx in front of hfgit.

The example is rendered with only its ports and file paths changed (each substitution
must match exactly once, so the example cannot drift from what is tested) and wrapped in
the few main-context lines nginx needs to run unprivileged in a temporary directory.
Then git, git-lfs and ``huggingface_hub`` talk to it over https, trusting the test's own
self-signed certificate, and everything hfgit builds (LFS hrefs, API URLs) is https.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shlex
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from huggingface_hub.utils import close_session

from hfgit.cli import build_parser
from hubtest import (
    ROOT,
    Git,
    Hub,
    MakeHub,
    free_port,
    http_request,
    require_tool,
    spawn,
    stop_server,
    unique,
    wait_healthy,
)
from lfs_support import MEDIA, lfs_worktree

EXAMPLE = ROOT / "examples" / "nginx" / "hfgit.conf"
SERVICE = ROOT / "examples" / "systemd" / "hfgit.service"


def _render(example: str, substitutions: dict[str, str]) -> str:
    for old, new in substitutions.items():
        assert example.count(old) == 1, f"{old!r} must appear once in {EXAMPLE.name}"
        example = example.replace(old, new)
    return example


def _certificate(directory: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1, made with openssl for this test only."""
    cert, key = directory / "cert.pem", directory / "key.pem"
    subprocess.run(
        [
            require_tool("openssl", "openssl"),
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=127.0.0.1",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
    )
    return cert, key


class Front:
    def __init__(self, url: str, cert: Path, hub: Hub) -> None:
        self.url = url
        self.cert = cert
        self.hub = hub


@pytest.fixture
def front(make_hub: MakeHub, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Front]:
    nginx = require_tool("nginx", "nginx")
    hub = make_hub(env={"HFGIT_TRUST_PROXY": "1"})
    backend = hub.url.removeprefix("http://")
    prefix = tmp_path / "nginx"
    prefix.mkdir()
    cert, key = _certificate(prefix)
    https, plain_port = free_port(), free_port()
    site = _render(
        EXAMPLE.read_text(),
        {
            "server 127.0.0.1:8080;": f"server {backend};",
            "listen 443 ssl;": f"listen 127.0.0.1:{https} ssl;",
            "listen 80;": f"listen 127.0.0.1:{plain_port};",
            "/etc/letsencrypt/live/hf.example.com/fullchain.pem": str(cert),
            "/etc/letsencrypt/live/hf.example.com/privkey.pem": str(key),
        },
    )
    (prefix / "hfgit.conf").write_text(site)
    temp = "\n".join(
        f"    {kind}_temp_path {prefix / kind};"
        for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
    )
    (prefix / "nginx.conf").write_text(
        # As root, nginx's workers would switch to nobody, who cannot enter tmp_path.
        ("user root;\n" if os.geteuid() == 0 else "")
        + f"daemon off;\npid {prefix / 'nginx.pid'};\nerror_log {prefix / 'error.log'} info;\n"
        + "events { worker_connections 256; }\n"
        + f"http {{\n    access_log {prefix / 'access.log'};\n{temp}\n"
        + f"    include {prefix / 'hfgit.conf'};\n}}\n"
    )
    command = [nginx, "-p", str(prefix), "-e", str(prefix / "error.log"), "-c", "nginx.conf"]
    process = spawn(command, prefix / "stderr.log")
    # Python's ssl (urllib), httpx (huggingface_hub) and requests trust the certificate.
    for variable in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        monkeypatch.setenv(variable, str(cert))
    # huggingface_hub keeps one HTTP client per process, made with the trust of its time:
    # a new one is made for this test, and another after it.
    close_session()
    try:
        url = f"https://127.0.0.1:{https}"
        wait_healthy(url, process, prefix / "error.log")
        plain = http.client.HTTPConnection("127.0.0.1", plain_port, timeout=30)
        plain.request("GET", "/x")
        assert plain.getresponse().status == 301  # plain HTTP only redirects
        plain.close()
        yield Front(url, cert, hub)
    finally:
        close_session()
        stop_server(process)


def test_clone_push_with_lfs_and_the_api_over_https(front: Front, lfs_git: Git, tmp_path: Path):
    hub = front.hub
    user = hub.make_user()
    token = hub.make_token(user, "write")
    lfs_git.run("config", "--global", "http.sslCAInfo", str(front.cert))
    # Pushes past this size are sent chunked: through nginx, unbuffered, to hfgit.
    lfs_git.run("config", "--global", "http.postBuffer", "65536")

    api = HfApi(endpoint=front.url, token=token)
    assert api.whoami()["name"] == user
    created = api.create_repo(f"{user}/{unique('m')}", private=True)
    assert created.startswith(f"{front.url}/{user}/")
    repo = created.removeprefix(f"{front.url}/")

    weights = os.urandom(1024 * 1024 + 5)
    oid = hashlib.sha256(weights).hexdigest()
    work, _ = lfs_worktree(lfs_git, tmp_path / "work", weights)
    lfs_git.commit(work, {"config.bin": os.urandom(512 * 1024).hex()})
    lfs_git.run("push", "-q", f"{front.url}/{repo}", "main", cwd=work, token=token)
    clone = tmp_path / "clone"
    lfs_git.run("clone", "-q", f"{front.url}/{repo}", str(clone), token=token)
    assert (clone / "model.safetensors").read_bytes() == weights
    assert (clone / "config.bin").read_text() == (work / "config.bin").read_text()

    status, _, body = http_request(
        "POST",
        f"{front.url}/{repo}.git/info/lfs/objects/batch",
        token=token,
        body=json.dumps(
            {"operation": "download", "objects": [{"oid": oid, "size": len(weights)}]}
        ).encode(),
        headers={"Accept": MEDIA, "Content-Type": MEDIA},
    )
    assert status == 200, body
    href = json.loads(body)["objects"][0]["actions"]["download"]["href"]
    assert href.startswith(f"{front.url}/{repo}.git/info/lfs/")
    assert http_request("GET", href)[2] == weights
    # Session cookies are Secure behind the trusted TLS proxy.
    _, headers, _ = http_request("GET", f"{front.url}/login")
    assert "Secure" in headers["Set-Cookie"]


def _unit_section(text: str, name: str) -> dict[str, list[str]]:
    """One section of a systemd unit: each key with its values (keys may repeat)."""
    section: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("["):
            current = line.strip("[]")
        elif line and not line.startswith("#") and current == name:
            key, _, value = line.partition("=")
            section.setdefault(key, []).append(value)
    return section


def test_systemd_unit_runs_the_command_line_it_documents():
    service = _unit_section(SERVICE.read_text(), "Service")
    program, *args = shlex.split(service["ExecStart"][0])
    assert program.endswith("/hfgit")
    parsed = build_parser().parse_args(args)
    assert (parsed.command, parsed.host) == ("serve", "127.0.0.1")
    environment = dict(item.split("=", 1) for item in service["Environment"])
    assert environment["HFGIT_TRUST_PROXY"] == "1"
    assert service["ReadWritePaths"] == [environment["HFGIT_DATA_DIR"]]
    for key, value in {
        "ProtectSystem": "strict",
        "NoNewPrivileges": "yes",
        "User": "hfgit",
        "CapabilityBoundingSet": "",
        "PrivateTmp": "yes",
    }.items():
        assert service[key] == [value], key
