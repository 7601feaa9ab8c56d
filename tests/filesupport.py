"""Helpers for the file API tests: seed repositories with git, raw requests, client runs."""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
from pathlib import Path

from hfgit.names import RepoId
from hubtest import Git, Hub, unique


def raw_request(
    hub: Hub,
    method: str,
    path: str,
    *,
    token: str | None = None,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request with ``path`` sent exactly as written (escapes and all)."""
    connection = http.client.HTTPConnection(hub.url.removeprefix("http://"), timeout=60)
    sent = dict(headers or {})
    if token:
        sent["Authorization"] = f"Bearer {token}"
    try:
        connection.request(method, path, body=body, headers=sent)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


def api_json(hub: Hub, method: str, path: str, token: str | None = None, body: object = None):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"} if data is not None else {}
    status, headers, raw = raw_request(hub, method, path, token=token, body=data, headers=headers)
    return status, headers, (json.loads(raw) if raw else None)


def seed(
    hub: Hub,
    git: Git,
    work: Path,
    repo: RepoId,
    token: str,
    files: dict[str, bytes | str],
    *,
    lfs: tuple[str, ...] = (),
    branch: str = "main",
    message: str = "seed",
) -> str:
    """Push one commit holding ``files`` (``lfs`` patterns tracked by git-lfs); its id."""
    if not (work / ".git").exists():
        git.run("init", "-q", "-b", branch, str(work))
    for pattern in lfs:
        git.run("lfs", "track", pattern, cwd=work)
    sha = git.commit(work, files, message)
    git.run("push", "-q", hub.repo_url(repo), f"HEAD:refs/heads/{branch}", cwd=work, token=token)
    return sha


def new_repo(hub: Hub, owner: str, *, private: bool = True, type: str = "model", **kw) -> RepoId:
    return hub.make_repo(f"{owner}/{unique('r')}", private=private, type=type, **kw)


def run_client(
    hub: Hub, code: str, home: Path, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Python code in a fresh process whose huggingface_hub points at ``hub``."""
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(home), **(env or {})},
    )


def run_hf(
    hub: Hub,
    args: list[str],
    home: Path,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> subprocess.CompletedProcess[str]:
    """The ``hf`` command line against ``hub``."""
    hf = Path(sys.executable).with_name("hf")
    return subprocess.run(
        [str(hf), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env={**os.environ, "HF_ENDPOINT": hub.url, "HF_HOME": str(home), **(env or {})},
    )
