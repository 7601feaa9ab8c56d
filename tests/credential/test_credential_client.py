"""``hfgit login|logout|auth|whoami|setup-git`` against the real server, through real git."""

from __future__ import annotations

import http.server
import threading

import pytest
from credhelpers import absent, new_token, not_secret, same_secret, unanswered


def host_of(hub) -> str:
    return hub.url.removeprefix("http://")


def fill(cred, hub, path: str = "") -> dict[str, str]:
    text = f"protocol=http\nhost={host_of(hub)}\n" + (f"path={path}\n" if path else "")
    return cred.fill(text, "credential.usehttppath=true")


def login(cred, hub, token: str, *extra: str):
    return cred.hfgit("login", "--endpoint", hub.url, "--token-stdin", *extra, token=token + "\n")


def test_login_records_account_and_answers_git(cred, hub):
    user = hub.make_user()
    token = hub.make_token(user, "write", name="laptop")
    result = login(cred, hub, token)
    assert f"as {user}".encode() in result.stderr and b"'laptop'" in result.stderr
    # huggingface_hub uploads through Xet unless told not to; hfgit serves Git LFS only.
    assert f"HF_ENDPOINT={hub.url}".encode() in result.stderr
    assert b"HF_HUB_DISABLE_XET=1" in result.stderr
    absent(token, result.stdout + result.stderr)
    out = fill(cred, hub)
    same_secret(out["password"], token)
    assert out["username"] == user
    listing = cred.hfgit("auth", "list")
    assert b"laptop" in listing.stdout and user.encode() in listing.stdout
    absent(token, listing.stdout + listing.stderr)
    who = cred.hfgit("whoami", "--endpoint", hub.url)
    assert who.stdout.decode().splitlines()[0] == user
    absent(token, who.stdout + who.stderr)


def test_rejected_token_saves_nothing_and_keeps_existing(cred, hub):
    user = hub.make_user()
    good = hub.make_token(user, "read", name="good")
    login(cred, hub, good)
    before = cred.store_file.read_bytes()
    for bad, message in [
        (new_token(), b"rejected this token"),
        ("api_org_" + "x" * 30, b"deprecated"),
        ("hf_abc\x1bdef", b"control characters"),
        ("", b"no token given"),
    ]:
        result = cred.hfgit(
            "login", "--endpoint", hub.url, "--token-stdin", token=bad + "\n", check=False
        )
        assert result.returncode == 1 and message in result.stderr
        assert cred.store_file.read_bytes() == before


def test_login_without_stdin_flag_and_no_terminal_is_refused(cred, hub):
    result = cred.hfgit("login", "--endpoint", hub.url, token="", check=False)
    assert result.returncode == 1 and b"--token-stdin" in result.stderr
    assert not cred.store_file.exists()


def test_bad_endpoints_refused(cred):
    for url, message in [
        ("huggingface.co", b"not an https:// or http:// URL"),
        ("ftp://huggingface.co", b"not an https:// or http:// URL"),
        ("https://user@huggingface.co", b"user name"),
        ("https://huggingface.co/prefix", b"no path"),
    ]:
        result = cred.hfgit("login", "--endpoint", url, "--token-stdin", token="x\n", check=False)
        assert result.returncode == 1 and message in result.stderr


def test_logout_and_switch(cred, hub):
    user = hub.make_user()
    first = hub.make_token(user, "write", name="first")
    second = hub.make_token(user, "write", name="second")
    login(cred, hub, first)
    login(cred, hub, second)
    same_secret(fill(cred, hub)["password"], second, "latest login is active")
    cred.hfgit("auth", "switch", "first", "--endpoint", hub.url)
    same_secret(fill(cred, hub)["password"], first, "after switch")
    result = cred.hfgit("auth", "switch", "nope", "--endpoint", hub.url, check=False)
    assert result.returncode == 1 and b"no token named 'nope'" in result.stderr
    cred.hfgit("logout", "--endpoint", hub.url, "--name", "first")
    same_secret(fill(cred, hub)["password"], second, "only one left")
    result = cred.hfgit("logout", "--endpoint", hub.url, "--name", "first", check=False)
    assert result.returncode == 1
    cred.hfgit("logout", "--endpoint", hub.url)
    unanswered(fill(cred, hub))


def test_relogin_under_same_name_replaces_token(cred, hub):
    user = hub.make_user()
    old = hub.make_token(user, "write", name="ci")
    login(cred, hub, old)
    new = hub.make_token(user, "write", name="ci2")
    login(cred, hub, new, "--name", "ci")
    same_secret(fill(cred, hub)["password"], new)
    absent(old, cred.store_file.read_text())


def test_token_per_repo(cred, hub):
    """Pinned token for one repo, a fine-grained token for another, active one elsewhere."""
    user = hub.make_user()
    default = hub.make_token(user, "read", name="default")
    pinned = hub.make_token(user, "write", name="pinned")
    hub.make_repo(f"{user}/scoped", private=True)
    scoped = hub.make_token(
        user, "fineGrained", name="scoped", scopes=[f"model:{user}/scoped=repo.write"]
    )
    login(cred, hub, pinned, "--repo", f"datasets/{user}/data")
    login(cred, hub, scoped)
    login(cred, hub, default)
    same_secret(fill(cred, hub, f"datasets/{user}/data.git")["password"], pinned, "pinned")
    same_secret(fill(cred, hub, f"datasets/{user}/data.git/info/lfs")["password"], pinned, "lfs")
    same_secret(fill(cred, hub, f"{user}/scoped.git")["password"], scoped, "fine-grained")
    same_secret(fill(cred, hub, f"{user}/other")["password"], default, "active")
    same_secret(fill(cred, hub)["password"], default, "no path")
    not_secret(fill(cred, hub, f"{user}/data")["password"], pinned, "model, not dataset")


def test_setup_git_idempotent_and_undo_keeps_other_settings(cred, hub):
    cred.run(["git", "config", "--global", "credential.helper", "store"])
    for _ in range(2):
        cred.hfgit("setup-git", "--endpoint", hub.url)
    helpers = cred.run(["git", "config", "--global", "--get-all", "credential.helper"]).stdout
    assert helpers.decode().splitlines() == ["store", "hf"]
    key = f"credential.{hub.url}.usehttppath"
    assert cred.run(["git", "config", "--global", key]).stdout.strip() == b"true"
    cred.hfgit("setup-git", "--endpoint", hub.url, "--undo")
    helpers = cred.run(["git", "config", "--global", "--get-all", "credential.helper"]).stdout
    assert helpers.decode().splitlines() == ["store"]
    assert cred.run(["git", "config", "--global", key], check=False).returncode == 1


def test_setup_git_local_outside_a_repository_fails_clearly(cred, hub):
    result = cred.hfgit("setup-git", "--local", "--endpoint", hub.url, check=False)
    assert result.returncode == 1 and b"hfgit: error:" in result.stderr


class _Server(http.server.ThreadingHTTPServer):
    seen_auth: list[str]


def _serve(handler_body) -> tuple[_Server, str]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.server.seen_auth.append(self.headers.get("Authorization", ""))
            handler_body(self)

        def log_message(self, *args):
            pass

    server = _Server(("127.0.0.1", 0), Handler)
    server.seen_auth = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def test_server_without_whoami_accepts_unvalidated_token(cred):
    def not_found(h):
        h.send_response(404)
        h.end_headers()

    server, url = _serve(not_found)
    try:
        token = new_token()
        result = cred.hfgit(
            "login", "--endpoint", url, "--name", "box", "--token-stdin", token=token
        )
        assert b"not validated" in result.stderr
        host = url.removeprefix("http://")
        same_secret(cred.fill(f"protocol=http\nhost={host}\n")["password"], token)
    finally:
        server.shutdown()


def test_whoami_redirect_is_not_followed_with_the_token(cred):
    target, target_url = _serve(lambda h: (h.send_response(200), h.end_headers()))

    def redirect(h):
        h.send_response(302)
        h.send_header("Location", f"{target_url}/api/whoami-v2")
        h.end_headers()

    source, url = _serve(redirect)
    try:
        token = new_token()
        result = cred.hfgit("login", "--endpoint", url, "--token-stdin", token=token, check=False)
        assert result.returncode == 1 and b"redirected" in result.stderr
        assert target.seen_auth == [] and len(source.seen_auth) == 1
        assert not cred.store_file.exists()
    finally:
        source.shutdown()
        target.shutdown()


@pytest.mark.parametrize("repo", ["noslash", "a/b/c/d", "models/x/y/z"])
def test_bad_repo_pin_refused(cred, hub, repo):
    result = cred.hfgit(
        "login",
        "--endpoint",
        hub.url,
        "--repo",
        repo,
        "--token-stdin",
        token="x\n",
        check=False,
    )
    assert result.returncode == 1 and b"--repo" in result.stderr


def test_bearer_only_for_git_that_announces_authtype(cred, hub):
    user = hub.make_user()
    token = hub.make_token(user, "write", name="bearer")
    login(cred, hub, token, "--bearer")
    request = f"protocol=http\nhost={host_of(hub)}\n"
    out = cred.helper("get", "capability[]=authtype\n" + request)
    lines = out.stdout.decode().splitlines()
    assert [line.split("=")[0] for line in lines] == ["capability[]", "authtype", "credential"]
    assert lines[0] == "capability[]=authtype" and lines[1] == "authtype=Bearer"
    same_secret(lines[2].removeprefix("credential="), token)
    plain = cred.helper_answer(request)  # git 2.39 sends no capability: Basic as usual
    same_secret(plain.get("password"), token)
    assert sorted(plain) == ["password", "username"]


def test_server_reported_expiry_reaches_git(cred, hub):
    user = hub.make_user()
    login(cred, hub, hub.make_token(user, "write", name="short-lived", expires_in_days=3))
    answer = cred.helper_answer(f"protocol=http\nhost={host_of(hub)}\n")
    expected = hub.accounts.tokens.list(user)[0].expires_at
    assert int(answer["password_expiry_utc"]) == pytest.approx(expected, abs=1)


def test_login_expiry_is_passed_to_git_and_honoured(cred, hub):
    from hfgit.credential import secretfile

    user = hub.make_user()
    login(cred, hub, hub.make_token(user, "write", name="x"))
    request = f"protocol=http\nhost={host_of(hub)}\n"
    for expires, expect_answer in [("9999999999", True), ("1000", False)]:
        with secretfile.Update(str(cred.store_file)) as records:
            records[0]["expires"] = expires
        answer = cred.helper_answer(request)
        expiry, keys = answer.get("password_expiry_utc"), sorted(answer)
        assert expiry == (expires if expect_answer else None)
        assert keys == (["password", "password_expiry_utc", "username"] if expect_answer else [])
