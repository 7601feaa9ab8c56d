"""The WSGI app under other servers: a chunked push body is decoded exactly once.

git sends bodies over 1 MiB with ``Transfer-Encoding: chunked``. gunicorn (``hfgit
serve``, tested everywhere else) and werkzeug decode it and set ``wsgi.input_terminated``;
waitress buffers it and sets ``CONTENT_LENGTH``. dulwich alone would decode it a second
time and break every such push.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hfgit.accounts import Accounts
from hfgit.config import Settings
from hfgit.names import RepoId
from hubtest import Git, free_port, stop_server

SERVE = {
    "waitress": "import waitress; waitress.serve(app, host='127.0.0.1', port={port}, threads=4)",
    "werkzeug": (
        "from werkzeug.serving import run_simple; "
        "run_simple('127.0.0.1', {port}, app, threaded=True)"
    ),
}


@pytest.mark.parametrize("server", sorted(SERVE))
def test_chunked_push_under_other_wsgi_servers(server: str, git: Git, tmp_path: Path):
    data_dir = tmp_path / "data"
    accounts = Accounts.open(Settings.load(data_dir))
    accounts.create_user("alice")
    accounts.create_repo(RepoId.parse("alice/model"), private=True)
    token, _ = accounts.create_token("alice", "ci", "write")
    port = free_port()
    code = (
        "from hfgit.config import Settings; from hfgit.server import create_app; "
        f"app = create_app(Settings.load({str(data_dir)!r})); " + SERVE[server].format(port=port)
    )
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=2).close()
                break
            except OSError:
                time.sleep(0.1)
        files = {f"shard-{i}.bin": os.urandom(4 * 1024 * 1024) for i in range(3)}
        worktree = git.init_worktree(tmp_path / "wt", files)
        git.run("push", f"{url}/alice/model", "main", cwd=worktree, token=token)
        git.run("clone", f"{url}/alice/model", str(tmp_path / "c"), token=token)
        for name, content in files.items():
            assert (tmp_path / "c" / name).read_bytes() == content
    finally:
        stop_server(process)
        accounts.store.dispose()


@pytest.mark.parametrize("server", sorted(SERVE))
def test_file_api_reads_the_raw_uri_under_other_wsgi_servers(server: str, tmp_path: Path):
    """waitress and werkzeug give the raw path in REQUEST_URI (gunicorn: RAW_URI)."""
    from huggingface_hub import HfApi

    data_dir = tmp_path / "data"
    accounts = Accounts.open(Settings.load(data_dir))
    accounts.create_user("alice")
    accounts.create_repo(RepoId.parse("alice/model"), private=True)
    token, _ = accounts.create_token("alice", "ci", "write")
    port = free_port()
    code = (
        "from hfgit.config import Settings; from hfgit.server import create_app; "
        f"app = create_app(Settings.load({str(data_dir)!r})); " + SERVE[server].format(port=port)
    )
    log = (tmp_path / "server.log").open("wb")
    process = subprocess.Popen([sys.executable, "-c", code], stdout=log, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{url}/healthz", timeout=2).close()
                break
            except OSError:
                time.sleep(0.1)
        api = HfApi(endpoint=url, token=token)
        api.upload_file(path_or_fileobj=b"main", path_in_repo="a b.txt", repo_id="alice/model")
        api.create_branch("alice/model", branch="feat/x")
        api.upload_file(
            path_or_fileobj=b"feat",
            path_in_repo="a b.txt",
            repo_id="alice/model",
            revision="feat/x",
        )
        headers = {"Authorization": f"Bearer {token}"}
        request = urllib.request.Request(
            f"{url}/alice/model/resolve/feat%2Fx/a%20b.txt", headers=headers
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            assert response.read() == b"feat"
        request = urllib.request.Request(
            f"{url}/alice/model/resolve/main/..%2Fa%20b.txt", headers=headers
        )
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(request, timeout=30)
        assert caught.value.code == 400
    finally:
        stop_server(process)
        accounts.store.dispose()
