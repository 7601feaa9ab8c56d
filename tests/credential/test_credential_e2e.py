"""git clone and git push against the real server with only ``credential.helper=hf``.

No token appears in any URL, argument or git config: git asks the helper, which answers
from ``hfgit login`` or from ``huggingface_hub``'s sources.
"""

from __future__ import annotations

import sys

from credhelpers import absent, same_secret

AUTHOR = {
    "GIT_AUTHOR_NAME": "T",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "T",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def git(cred, *args, cwd=None, check=True, env=None):
    return cred.run(["git", *args], cwd=cwd, check=check, env={**AUTHOR, **(env or {})})


def push_then_clone(cred, hub, url, tmp_path, env=None):
    work = tmp_path / "work"
    git(cred, "init", "-q", "-b", "main", str(work))
    (work / "README.md").write_text("hello from the helper\n")
    git(cred, "add", "README.md", cwd=work)
    git(cred, "commit", "-q", "-m", "first", cwd=work)
    git(cred, "push", url, "main", cwd=work, env=env)
    clone = tmp_path / "clone"
    git(cred, "clone", "-q", url, str(clone), env=env)
    assert (clone / "README.md").read_text() == "hello from the helper\n"
    return clone


def no_token_in_config(cred, clone, token):
    for path in (cred.home / ".gitconfig", clone / ".git" / "config"):
        absent(token, path.read_text())


def test_clone_and_push_after_hfgit_login(cred, hub, tmp_path):
    user = hub.make_user()
    token = hub.make_token(user, "write", name="git")
    rid = hub.make_repo(f"{user}/model", private=True)
    url = hub.repo_url(rid)
    assert "@" not in url
    cred.hfgit("setup-git", "--endpoint", hub.url)
    cred.hfgit("login", "--endpoint", hub.url, "--token-stdin", token=token)
    clone = push_then_clone(cred, hub, url, tmp_path)
    no_token_in_config(cred, clone, token)


def test_clone_and_push_with_huggingface_hub_token_only(cred, hub, tmp_path):
    user = hub.make_user()
    token = hub.make_token(user, "write")
    rid = hub.make_repo(f"{user}/data", private=True, type="dataset")
    cred.hfgit("setup-git", "--endpoint", hub.url)
    env = {"HF_ENDPOINT": hub.url}
    cred.run(
        [sys.executable, "-c", "import sys, huggingface_hub as h; h.login(token=sys.stdin.read())"],
        token,
        env=env,
    )
    clone = push_then_clone(cred, hub, hub.repo_url(rid), tmp_path, env=env)
    no_token_in_config(cred, clone, token)


def test_revoked_login_is_erased_after_git_reports_failure(cred, hub, tmp_path):
    user = hub.make_user()
    token = hub.make_token(user, "write", name="soon-gone")
    rid = hub.make_repo(f"{user}/gone", private=True)
    cred.hfgit("setup-git", "--endpoint", hub.url)
    cred.hfgit("login", "--endpoint", hub.url, "--token-stdin", token=token)
    hub.accounts.tokens.delete(user, "soon-gone")
    result = git(cred, "clone", "-q", hub.repo_url(rid), str(tmp_path / "c"), check=False)
    assert result.returncode != 0
    assert b"Authentication failed" in result.stderr
    assert b"removed the token 'soon-gone'" in result.stderr
    absent(token, result.stderr + result.stdout)
    absent(token, cred.store_file.read_text())


def test_pinned_write_token_pushes_while_active_read_token_clones(cred, hub, tmp_path):
    user = hub.make_user()
    reader = hub.make_token(user, "read", name="reader")
    writer = hub.make_token(user, "write", name="writer")
    rid = hub.make_repo(f"{user}/pinned", private=True)
    cred.hfgit("setup-git", "--endpoint", hub.url)
    cred.hfgit(
        "login",
        "--endpoint",
        hub.url,
        "--token-stdin",
        "--repo",
        f"{user}/pinned",
        token=writer,
    )
    cred.hfgit("login", "--endpoint", hub.url, "--token-stdin", token=reader)
    push_then_clone(cred, hub, hub.repo_url(rid), tmp_path)
    host = hub.url.removeprefix("http://")
    out = cred.fill(
        f"protocol=http\nhost={host}\npath={user}/other.git\n", "credential.usehttppath=1"
    )
    same_secret(out["password"], reader)
