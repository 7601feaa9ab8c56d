"""Tokens written by the real ``huggingface_hub`` (files) or set in the environment.

``huggingface_hub.login`` validates the token with ``/api/whoami-v2``, so these tests run
against the real hfgit server (``hub``) as ``HF_ENDPOINT``.
"""

from __future__ import annotations

import sys
import time

import pytest
from credhelpers import absent, new_token, not_secret, same_secret, unanswered

HF_LOGIN = (
    "import sys, huggingface_hub\n"
    "huggingface_hub.login(token=sys.stdin.read().strip(), add_to_git_credential={git})\n"
)


def hf_login(cred, hub, token: str, add_to_git: bool = False, **env: str) -> None:
    cred.run(
        [sys.executable, "-c", HF_LOGIN.format(git=add_to_git)],
        token,
        env={"HF_ENDPOINT": hub.url, **env},
    )


def hub_request(hub, path: str = "") -> str:
    host = hub.url.removeprefix("http://")
    return f"protocol=http\nhost={host}\n" + (f"path={path}\n" if path else "")


@pytest.fixture
def user_token(hub):
    user = hub.make_user()
    name = f"laptop-{user}"
    return user, name, hub.make_token(user, "write", name=name)


def test_token_file_written_by_huggingface_hub(cred, hub, user_token):
    _, _, token = user_token
    hf_login(cred, hub, token)
    assert (cred.hf_home / "token").exists() and (cred.hf_home / "stored_tokens").exists()
    out = cred.fill(hub_request(hub), env={"HF_ENDPOINT": hub.url})
    same_secret(out["password"], token)
    assert out["username"] == "hf_user"
    # the same token also serves huggingface.co, but never a host the user did not name
    same_secret(cred.fill("protocol=https\nhost=huggingface.co\n")["password"], token)
    not_secret(cred.fill(hub_request(hub))["password"], token, "without HF_ENDPOINT")


def test_hf_token_path_is_honoured(cred, hub, user_token, tmp_path):
    _, _, token = user_token
    custom = tmp_path / "custom" / "tok"
    hf_login(cred, hub, token, HF_TOKEN_PATH=str(custom))
    assert custom.exists() and not (cred.hf_home / "token").exists()
    env = {"HF_TOKEN_PATH": str(custom)}
    same_secret(cred.fill("protocol=https\nhost=hf.co\n", env=env)["password"], token)
    unanswered(cred.fill("protocol=https\nhost=hf.co\n"))


def test_environment_overrides_file_in_huggingface_hub_order(cred, hub, user_token):
    _, _, file_token = user_token
    hf_login(cred, hub, file_token)
    env_token, legacy_token = new_token(), new_token()
    req = "protocol=https\nhost=huggingface.co\n"
    same_secret(cred.fill(req, env={"HF_TOKEN": env_token})["password"], env_token)
    out = cred.fill(req, env={"HUGGING_FACE_HUB_TOKEN": legacy_token})
    same_secret(out["password"], legacy_token)
    out = cred.fill(req, env={"HF_TOKEN": env_token, "HUGGING_FACE_HUB_TOKEN": legacy_token})
    same_secret(out["password"], env_token)
    same_secret(cred.fill(req, env={"HF_TOKEN": "  \n"})["password"], file_token, "blank HF_TOKEN")


def test_stored_tokens_expiry_is_reported_and_honoured(cred):
    """An OAuth login records ``expires_at``; git learns it, and an expired token is dropped."""
    token = new_token()
    script = (
        "import sys\nfrom huggingface_hub.utils._auth import _save_token, _write_secret\n"
        "from huggingface_hub import constants\nfrom pathlib import Path\n"
        "t, exp = sys.stdin.read().split()\n"
        "_save_token(token=t, token_name='oauth-me', expires_at=int(exp))\n"
        "_write_secret(Path(constants.HF_TOKEN_PATH), t)\n"
    )
    future = int(time.time()) + 3600
    cred.run([sys.executable, "-c", script], f"{token} {future}")
    out = cred.helper_answer("protocol=https\nhost=huggingface.co\n")
    same_secret(out.get("password"), token)
    assert out["password_expiry_utc"] == str(future)
    cred.run([sys.executable, "-c", script], f"{token} {int(time.time()) - 10}")
    assert cred.helper_answer("protocol=https\nhost=huggingface.co\n") == {}


def test_rejected_external_token_is_kept_and_explained(cred, hub, user_token):
    _, name, token = user_token
    hf_login(cred, hub, token)
    token_file = (cred.hf_home / "token").read_bytes()
    result = cred.reject(
        "protocol=https\nhost=huggingface.co\nusername=hf_user\npassword=" + token + "\n"
    )
    assert (cred.hf_home / "token").read_bytes() == token_file
    assert name.encode() in result.stderr and b"token file" in result.stderr
    absent(token, result.stderr + result.stdout)
    env_token = new_token()
    result = cred.reject(
        f"protocol=https\nhost=huggingface.co\nusername=hf_user\npassword={env_token}\n",
        env={"HF_TOKEN": env_token},
    )
    assert b"HF_TOKEN" in result.stderr
    absent(env_token, result.stderr)


def test_approve_does_not_copy_an_external_token(cred, hub, user_token):
    """git approves every credential that worked; a copy would outlive a rotated source."""
    _, _, token = user_token
    env = {"HF_TOKEN": token}
    cred.approve(
        f"protocol=https\nhost=huggingface.co\nusername=hf_user\npassword={token}\n", env=env
    )
    if cred.store_file.exists():
        absent(token, cred.store_file.read_text())


def test_hf_login_add_to_git_credential_with_setup_git_config(cred, hub, user_token):
    """``huggingface_hub.login(add_to_git_credential=True)`` sees the plain helper entry
    setup-git writes, runs ``git credential approve``, and git then gets the token."""
    _, _, token = user_token
    cred.hfgit("setup-git", "--endpoint", hub.url, "--global")
    helpers = cred.run(["git", "config", "--list"]).stdout.decode()
    assert "credential.helper=hf" in helpers.splitlines()
    result = cred.run(
        [sys.executable, "-c", HF_LOGIN.format(git=True)], token, env={"HF_ENDPOINT": hub.url}
    )
    assert b"has not been saved to git credential helper" not in result.stderr
    out = cred.run(
        ["git", "credential", "fill"], hub_request(hub, "alice/repo"), env={"HF_ENDPOINT": hub.url}
    ).stdout.decode()
    answer = dict(line.split("=", 1) for line in out.splitlines())
    same_secret(answer["password"], token)
    # and logout() runs ``git credential reject``, after which nothing answers any more
    cred.run(
        [sys.executable, "-c", "import huggingface_hub; huggingface_hub.logout()"],
        env={"HF_ENDPOINT": hub.url},
    )
    out = cred.run(
        ["git", "credential", "fill"], hub_request(hub), env={"HF_ENDPOINT": hub.url}
    ).stdout.decode()
    unanswered(dict(line.split("=", 1) for line in out.splitlines()))
