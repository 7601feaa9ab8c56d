"""What ``hfgit serve`` logs: never a secret, in text or JSON; JSON lines carry the
request's facts (route, repository, user, request id).

A token can reach a server without being sent as a credential: pasted into a URL path
or query, sent as a request id. Every line passes one redaction step.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from pathlib import Path

import pytest

from _wire import PushTarget, report_status
from hfgit.logs import Redact, redact
from hubtest import Git, Hub, MakeHub, basic_auth, http_request, unique


def log_after(hub: Hub, mark: int, wanted: str, timeout: float = 10) -> str:
    """The server's log written since ``mark``, once it holds ``wanted``."""
    assert hub.log is not None
    deadline = time.monotonic() + timeout
    while True:
        text = hub.log.read_bytes()[mark:].decode(errors="replace")
        if wanted in text or time.monotonic() > deadline:
            return text
        time.sleep(0.1)


def log_mark(hub: Hub) -> int:
    assert hub.log is not None
    return hub.log.stat().st_size


def test_a_token_in_the_url_never_reaches_the_access_log(hub: Hub) -> None:
    user = hub.make_user()
    token = hub.make_token(user)
    mark = log_mark(hub)
    marker = unique("m")
    status, _, _ = http_request("GET", f"{hub.url}/{token}@{user}/{marker}/info/refs")
    assert status == 404
    http_request("GET", f"{hub.url}/api/whoami-v2?token={token}&m={marker}")
    # The last request: its line is the one waited for.
    http_request("GET", f"{hub.url}/{user}/{marker}/info/refs?service=git-upload-pack&t={token}")
    text = log_after(hub, mark, f"/{user}/{marker}/info/refs")
    # Booleans, so a failure never prints the log (or the token) it looked at.
    logged, redacted = f"{marker}/info/refs" in text, "hf_***@" in text
    leaked = token in text or token[3:] in text
    assert logged and redacted, "the request lines are missing, or not redacted"
    assert not leaked, "the token reached the access log"


def _json_lines(text: str) -> list[dict]:
    lines = [line for line in text.splitlines() if line.strip()]
    parsed = []
    for line in lines:
        try:
            parsed.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"not a JSON line in the log: {redact(line)[:200]!r}")
    return parsed


@pytest.fixture
def json_hub(make_hub: MakeHub) -> Hub:
    return make_hub(extra_args=["--log-format", "json"])


def test_json_access_lines_carry_the_request_facts(json_hub: Hub, git: Git, tmp_path) -> None:
    hub = json_hub
    user = hub.make_user()
    token = hub.make_token(user, name="laptop")
    rid = hub.make_repo(f"{user}/{unique('r')}")
    work = git.init_worktree(tmp_path / "w")
    git.run("push", "-q", hub.repo_url(rid), "main", cwd=work, token=token)
    git.run("clone", "-q", hub.repo_url(rid), str(tmp_path / "anon"))

    status, headers, _ = http_request(
        "GET", f"{hub.url}/api/whoami-v2?secret=1", token=token, headers={"X-Request-Id": "abc-123"}
    )
    assert status == 200 and headers["X-Request-Id"] == "abc-123"
    # A request id that is not a short plain token is replaced, never echoed or logged.
    status, headers, _ = http_request("GET", f"{hub.url}/healthz", headers={"X-Request-Id": token})
    fresh = re.fullmatch(r"[0-9a-f]{32}", headers["X-Request-Id"]) is not None
    assert status == 200 and fresh, "an unsafe request id was echoed"
    status, _, _ = http_request(
        "GET",
        f"{hub.url}/api/whoami-v2",
        token="hf_" + "x" * 34,
        headers={"X-Request-Id": "bad-token"},
    )
    assert status == 401
    http_request("GET", f"{hub.url}/healthz", headers={"X-Request-Id": "the-end"})

    assert hub.log is not None
    # A line is written when its answer is closed, after the client has read it: wait
    # for each line this test reads, in whatever order the workers wrote them.
    for request_id in ("the-end", "abc-123"):
        log_after(hub, 0, f'"request_id": "{request_id}"')
    lines = _json_lines(log_after(hub, 0, '"request_id": "bad-token"'))
    access = [line for line in lines if "route" in line]
    push = next(line for line in access if line["route"] == "git.receive_pack")
    assert push["method"] == "POST"
    assert push["path"] == f"/{rid.repo_id}/git-receive-pack"
    assert push["repo"] == f"model {rid.repo_id}"
    assert push["user"] == user
    assert push["status"] == 200
    assert push["bytes"] > 0 and push["duration_ms"] >= 0
    assert re.fullmatch(r"[0-9a-f]{32}", push["request_id"])
    # The anonymous clone's lines name the repository and no user.
    anonymous = [
        line
        for line in access
        if line["route"] == "git.upload_pack" and line.get("repo") == f"model {rid.repo_id}"
    ]
    assert anonymous and all("user" not in line for line in anonymous)
    whoami = next(line for line in access if line["request_id"] == "abc-123")
    assert whoami["path"] == "/api/whoami-v2"  # no query string
    assert whoami["route"] == "api.whoami" and whoami["user"] == user
    replaced = any(line["path"] == "/healthz" and line["request_id"] != token for line in access)
    assert replaced
    bad = [line for line in access if line["route"] == "api.whoami" and line["status"] == 401]
    assert bad and all("user" not in line for line in bad)
    # Error lines are JSON too: gunicorn's.
    assert any(line.get("logger") == "gunicorn.error" and "message" in line for line in lines)
    text = hub.log.read_text()
    leaked = token in text or "hf_" + "x" * 34 in text or basic_auth(token) in text
    assert not leaked, "a token reached the log"
    assert "Authorization" not in text


def test_json_error_lines_from_hfgit_itself(json_hub: Hub, git: Git, tmp_path: Path) -> None:
    target = PushTarget.create(json_hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    commit, objects = scratch.commit_files({"data.txt": b"x" * 4000}, (target.main,))
    pack = scratch.pack(objects)
    broken = pack[:40] + bytes(b ^ 0x5A for b in pack[40:80]) + pack[80:]
    answer = target.push([(target.main, commit, "refs/heads/main")], broken)
    assert report_status(answer.body)["unpack"].startswith("unpack failed")
    lines = _json_lines(log_after(json_hub, 0, "unpack failed"))
    record = next(line for line in lines if "unpack failed" in line.get("message", ""))
    assert record["level"] == "info" and record["logger"] == "hfgit.server.git.push"
    leaked = target.token in json_hub.log.read_text()
    assert not leaked, "the token reached the log"


# The redaction step itself: pure code, table-tested.

TOKEN = "hf_" + "AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (f"GET /{TOKEN}@alice/repo", "GET /hf_***@alice/repo"),
        (f"/alice/repo?token={TOKEN}&x=1", "/alice/repo?token=hf_***&x=1"),
        ("api_org_" + "a1B2" * 8, "api_org_***"),
        ("Authorization: Bearer abc.def", "Authorization: ***"),
        ('{"authorization": "Basic dXNlcjpwYXNz"}', '{"authorization": "***"}'),
        ("sent Basic dXNlcjpwYXNzd29yZA== to", "sent Basic *** to"),
        ("Bearer eyJhbGciOiJIUzI1NiJ9.e30.x", "Bearer ***"),
        ("the LFS batch API with basic transfers", "the LFS batch API with basic transfers"),
        ("clone https://user:pass@example.com/x", "clone https://***@example.com/x"),
        ("http://alice@host/repo", "http://***@host/repo"),
        ("https://example.com/a@b", "https://example.com/a@b"),
        ("hf_short stays", "hf_short stays"),
        ("plain text", "plain text"),
    ],
)
def test_redact(text: str, expected: str) -> None:
    assert redact(text) == expected


def test_the_filter_redacts_arguments_and_tracebacks() -> None:
    try:
        raise ValueError(f"bad token {TOKEN}")
    except ValueError:
        record = logging.LogRecord(
            "hfgit.x", logging.ERROR, __file__, 1, "asked for %s", (TOKEN,), exc_info=True
        )
        record.exc_info = sys.exc_info()
    assert Redact().filter(record)
    line = logging.Formatter().format(record)
    leaked = TOKEN in line
    assert not leaked
    assert "asked for hf_***" in line and "ValueError: bad token hf_***" in line
