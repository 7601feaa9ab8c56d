"""The WSGI app under other servers: a chunked push body is decoded exactly once.

git sends bodies over 1 MiB with ``Transfer-Encoding: chunked``. gunicorn (``hfgit
serve``, tested everywhere else) and werkzeug decode it and set ``wsgi.input_terminated``;
waitress buffers it and sets ``CONTENT_LENGTH``. dulwich alone would decode it a second
time and break every such push.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from hfgit.accounts import Accounts
from hfgit.names import RepoId
from hubtest import Git, free_port, spawn, stop_server, wait_healthy

SERVE = {
    "waitress": "import waitress; waitress.serve(app, host='127.0.0.1', port={port}, threads=4)",
    "werkzeug": (
        "from werkzeug.serving import run_simple; "
        "run_simple('127.0.0.1', {port}, app, threaded=True)"
    ),
}


@pytest.mark.parametrize("server", sorted(SERVE))
def test_chunked_push_under_other_wsgi_servers(
    server: str, data_dir: Path, accounts: Accounts, git: Git, tmp_path: Path
):
    accounts.users.create_user("alice")
    accounts.repos.create(RepoId.parse("alice/model"), private=True)
    token, _ = accounts.tokens.create("alice", "ci", "write")
    port = free_port()
    code = (
        "from hfgit.config import Settings; from hfgit.server import create_app; "
        f"app = create_app(Settings.load({str(data_dir)!r})); " + SERVE[server].format(port=port)
    )
    log = tmp_path / "server.log"
    process = spawn([sys.executable, "-c", code], log)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_healthy(url, process, log)
        files = {f"shard-{i}.bin": os.urandom(4 * 1024 * 1024) for i in range(3)}
        worktree = git.init_worktree(tmp_path / "wt", files)
        git.run("push", f"{url}/alice/model", "main", cwd=worktree, token=token)
        git.run("clone", f"{url}/alice/model", str(tmp_path / "c"), token=token)
        for name, content in files.items():
            assert (tmp_path / "c" / name).read_bytes() == content
    finally:
        stop_server(process)


@pytest.mark.parametrize("server", sorted(SERVE))
def test_file_api_reads_the_raw_uri_under_other_wsgi_servers(
    server: str, data_dir: Path, accounts: Accounts, tmp_path: Path
):
    """waitress and werkzeug give the raw path in REQUEST_URI (gunicorn: RAW_URI)."""
    from huggingface_hub import HfApi

    accounts.users.create_user("alice")
    accounts.repos.create(RepoId.parse("alice/model"), private=True)
    token, _ = accounts.tokens.create("alice", "ci", "write")
    port = free_port()
    code = (
        "from hfgit.config import Settings; from hfgit.server import create_app; "
        f"app = create_app(Settings.load({str(data_dir)!r})); " + SERVE[server].format(port=port)
    )
    log = tmp_path / "server.log"
    url = f"http://127.0.0.1:{port}"
    # Embedded in another server, the app knows no listening address: absolute URLs (the
    # commit's) come from the configured public URL.
    process = spawn([sys.executable, "-c", code], log, {**os.environ, "HFGIT_PUBLIC_URL": url})
    try:
        wait_healthy(url, process, log)
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
