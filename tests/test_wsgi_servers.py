"""The WSGI app under other servers: a chunked push body is decoded exactly once.

git sends bodies over 1 MiB with ``Transfer-Encoding: chunked``. gunicorn (``hfgit
serve``, tested everywhere else) and werkzeug decode it and set ``wsgi.input_terminated``;
waitress buffers it and sets ``CONTENT_LENGTH``. dulwich alone would decode it a second
time and break every such push.
"""

from __future__ import annotations

import os
import sys
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
