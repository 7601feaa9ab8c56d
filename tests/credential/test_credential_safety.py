"""Inputs that must make the helper answer nothing: smuggled control characters, missing
fields, and hosts, ports or protocols that only resemble a hub endpoint.

Precedents: CVE-2020-5260 and CVE-2020-11008 (newline / missing host), CVE-2024-52006 (CR),
GCM's CVE-2024-50338 (CR accepted by a helper).
"""

from __future__ import annotations

import pytest
from credhelpers import absent, new_token, not_secret, same_secret

STORED = "protocol=https\nhost=victim.example.com\nusername=u\npassword=victim-pass\n"


def refused(result) -> None:
    assert result.returncode != 0
    assert result.stdout == b""
    assert b"git-credential-hf:" in result.stderr


@pytest.mark.parametrize(
    "bad",
    [
        b"host=example.com\r\n",  # CR (CVE-2024-52006)
        b"host=example.com\x00host=victim.example.com\n",  # NUL
        b"host=example.com\x0bhost=victim.example.com\n",  # VT: str.splitlines would split
        b"host=example.com\x0chost=victim.example.com\n",  # FF
        b"host=example.com\x1b[2J\n",  # ESC
        b"host=example.com\x7f\n",  # DEL
        b"host=example.com\n\rhost=victim.example.com\n",  # CR at the start of a line
        b"host=example.com\nusername=a\tb\n",  # TAB
    ],
)
def test_control_characters_refused(cred, bad):
    cred.approve(STORED)
    refused(cred.helper("get", b"protocol=https\n" + bad))


def test_unicode_line_separators_do_not_split_lines(cred):
    """U+2028 and friends are data, not line breaks; the host then fails validation."""
    cred.approve(STORED)
    for sep in ("\u2028", "\u2029", "\x85", "\x1c"):
        out = cred.helper("get", f"protocol=https\nhost=example.com{sep}host=victim.example.com\n")
        refused(out)


def test_cr_refused_even_when_git_protection_is_off(cred):
    """Git 2.39.5 refuses CR itself; with that switched off our helper still does."""
    cred.approve(STORED)
    result = cred.git(
        "fill",
        "protocol=https\nhost=evil.example\rhost=victim.example.com\n",
        "credential.protectProtocol=false",
        check=False,
    )
    assert b"victim-pass" not in result.stdout
    assert b"control character" in result.stderr


@pytest.mark.parametrize(
    "request_text",
    [
        "protocol=https\n",  # no host (CVE-2020-11008)
        "host=victim.example.com\n",  # no protocol
        "protocol=https\nhost=\n",  # empty host
        "protocol=\nhost=victim.example.com\n",
        "protocol=https\nhost=victim.example.com\nnot a key value line\n",
    ],
)
def test_incomplete_or_malformed_requests_refused(cred, request_text):
    cred.approve(STORED)
    refused(cred.helper("get", request_text))


def test_overlong_line_refused(cred):
    cred.approve(STORED)
    refused(cred.helper("get", "protocol=https\nhost=victim.example.com\nwwwauth[]=" + "a" * 70000))


@pytest.mark.parametrize(
    "host", ["victim.example.com@evil.tld", "evil.tld/victim.example.com", "victim.example.com:x"]
)
def test_hosts_with_url_syntax_refused(cred, host):
    cred.approve(STORED)
    refused(cred.helper("get", f"protocol=https\nhost={host}\n"))


@pytest.mark.parametrize(
    ("protocol", "host"),
    [
        ("https", "huggingface.co.evil.example"),  # contains the trusted name
        ("https", "evilhuggingface.co"),  # ends with it
        ("https", "huggingface.co:8443"),  # other port
        ("http", "huggingface.co"),  # cleartext
        ("https", "hf.co.evil.example"),
        ("https", "xn--huggingface-xyz.co"),
        ("https", "huggingface.c\u03bf"),  # Greek omicron look-alike, becomes xn--...
    ],
)
def test_hub_token_not_released_to_look_alikes(cred, protocol, host):
    token = new_token()
    out = cred.helper("get", f"protocol={protocol}\nhost={host}\n", env={"HF_TOKEN": token})
    not_secret(out.stdout.decode(), f"password={token}\n")
    absent(token, out.stdout + out.stderr)


@pytest.mark.parametrize(
    "host", ["huggingface.co", "HuggingFace.CO", "huggingface.co:443", "hf.co"]
)
def test_hub_token_released_to_hub_hosts(cred, host):
    token = new_token()
    out = cred.fill(f"protocol=https\nhost={host}\n", env={"HF_TOKEN": token})
    same_secret(out["password"], token)
    assert out["username"] == "hf_user"


def test_hf_endpoint_http_origin_is_exact(cred):
    token = new_token()
    env = {"HF_TOKEN": token, "HF_ENDPOINT": "http://127.0.0.1:8123"}
    same_secret(cred.fill("protocol=http\nhost=127.0.0.1:8123\n", env=env)["password"], token)
    for other in ("protocol=http\nhost=127.0.0.1:8124\n", "protocol=https\nhost=127.0.0.1:8123\n"):
        not_secret(cred.fill(other, env=env)["password"], token)


def test_invalid_hf_endpoint_is_ignored(cred):
    token = new_token()
    env = {"HF_TOKEN": token, "HF_ENDPOINT": "127.0.0.1:8123"}  # no scheme: not an endpoint
    not_secret(cred.fill("protocol=http\nhost=127.0.0.1:8123\n", env=env)["password"], token)
    not_secret(cred.fill("protocol=https\nhost=127.0.0.1:8123\n", env=env)["password"], token)


def test_hf_token_with_control_character_not_emitted(cred):
    out = cred.helper_answer(
        "protocol=https\nhost=huggingface.co\n", env={"HF_TOKEN": "hf_abc\x1bdef"}
    )
    assert out == {}
