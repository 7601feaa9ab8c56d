"""Failed-authentication limits on the token surfaces: git, the API and LFS.

The gate counts failures (never successes) per client address and per presented token in
the database, so every worker and every gatekeeper on it sees the same count.
"""

from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import sqlalchemy as sa
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from hfgit import tokens
from hfgit.store import login_failures
from hubtest import Git, Hub, MakeHub, basic_auth, running_hub

LIMIT_MESSAGE = "Too many failed authentication attempts"
LFS_TYPE = "application/vnd.git-lfs+json"


def request_from(
    source: str,
    url: str,
    *,
    token: str | None = None,
    method: str = "GET",
    body: bytes | None = None,
    headers: Mapping[str, str] | None = None,
) -> tuple[int, dict[str, str], bytes]:
    """One request sent from the loopback address ``source`` (127.0.0.0/8 is all ours)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(
        parts.hostname, parts.port, timeout=30, source_address=(source, 0)
    )
    sent = dict(headers or {})
    if token is not None:
        sent["Authorization"] = basic_auth(token)
    try:
        connection.request(
            method, parts.path + (f"?{parts.query}" if parts.query else ""), body, sent
        )
        answer = connection.getresponse()
        return answer.status, dict(answer.headers), answer.read()
    finally:
        connection.close()


def wrong_token() -> str:
    """A well-formed token no server issued: it costs the server a digest lookup."""
    return tokens.generate()


def auth_rows(hub: Hub) -> int:
    with hub.accounts.store.begin() as conn:
        query = sa.select(sa.func.count()).where(login_failures.c.key.startswith("auth-"))
        return conn.execute(query).scalar_one()


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Hub]:
    """A server with the default limits, of this module's own: it gets blocked."""
    with running_hub(tmp_path_factory.mktemp("limited") / "data") as hub:
        yield hub


@pytest.fixture(scope="module")
def target(limited: Hub) -> dict[str, str]:
    user = limited.make_user()
    repo = f"{user}/private"
    limited.make_repo(repo, private=True)
    return {"user": user, "repo": repo, "token": limited.make_token(user, "write")}


def test_300_wrong_tokens_get_429_on_git_api_and_lfs(
    limited: Hub, target: dict[str, str], git: Git
) -> None:
    url = limited.repo_url(target["repo"])
    refs = f"{url}.git/info/refs?service=git-upload-pack"
    statuses = [request_from("127.0.0.1", refs, token=wrong_token())[0] for _ in range(300)]
    assert set(statuses[:100]) == {401}, "a real user who mistypes is never limited"
    assert set(statuses[100:]) == {429}

    status, headers, body = request_from("127.0.0.1", refs, token=wrong_token())
    assert status == 429
    assert 0 < int(headers["Retry-After"]) <= 600
    assert LIMIT_MESSAGE in body.decode()

    bad = git.run("ls-remote", url, token=wrong_token(), check=False)
    assert bad.returncode != 0
    assert f"remote: {LIMIT_MESSAGE}" in bad.stderr

    with pytest.raises(HfHubHTTPError) as raised:
        HfApi(endpoint=limited.url, token=wrong_token()).whoami()
    assert raised.value.response.status_code == 429

    batch = json.dumps({"operation": "download", "objects": []}).encode()
    status, headers, body = request_from(
        "127.0.0.1",
        f"{url}.git/info/lfs/objects/batch",
        token=wrong_token(),
        method="POST",
        body=batch,
        headers={"Content-Type": LFS_TYPE, "Accept": LFS_TYPE},
    )
    assert status == 429 and "Retry-After" in headers
    assert LIMIT_MESSAGE in json.loads(body)["message"]

    # Meanwhile the right token works, from the blocked address and from another one,
    # and another address's own mistakes are its own.
    rows = auth_rows(limited)
    listed = git.run("ls-remote", url, token=target["token"])
    assert listed.returncode == 0
    assert request_from("127.0.0.2", refs, token=target["token"])[0] == 200
    assert auth_rows(limited) == rows, "a success is never counted"
    assert request_from("127.0.0.2", refs, token=wrong_token())[0] == 401


def test_forged_forwarded_for_does_not_escape(limited: Hub, target: dict[str, str]) -> None:
    refs = f"{limited.repo_url(target['repo'])}.git/info/refs?service=git-upload-pack"
    statuses = [
        request_from(
            "127.0.0.3",
            refs,
            token=wrong_token(),
            headers={"X-Forwarded-For": f"10.1.{n // 250}.{n % 250}"},
        )[0]
        for n in range(120)
    ]
    assert set(statuses[:100]) == {401}
    assert set(statuses[100:]) == {429}


def test_one_wrong_token_from_many_addresses(limited: Hub, target: dict[str, str]) -> None:
    refs = f"{limited.repo_url(target['repo'])}.git/info/refs?service=git-upload-pack"
    stale = wrong_token()
    statuses = [request_from(f"127.0.9.{n}", refs, token=stale)[0] for n in range(1, 26)]
    assert set(statuses[:20]) == {401}
    assert set(statuses[20:]) == {429}
    assert request_from("127.0.9.30", refs, token=wrong_token())[0] == 401


def test_trusted_proxy_counts_the_forwarded_client(make_hub: MakeHub) -> None:
    hub = make_hub(env={"HFGIT_TRUST_PROXY": "1", "HFGIT_AUTH_MAX_FAILURES_CLIENT": "5"}, workers=1)
    user = hub.make_user()
    refs = f"{hub.repo_url(hub.make_repo(f'{user}/r', private=True))}.git/info/refs"
    refs += "?service=git-upload-pack"
    first = {"X-Forwarded-For": "203.0.113.7"}
    statuses = [
        request_from("127.0.0.1", refs, token=wrong_token(), headers=first)[0] for _ in range(6)
    ]
    assert statuses == [401] * 5 + [429]
    other = {"X-Forwarded-For": "203.0.113.8"}
    assert request_from("127.0.0.1", refs, token=wrong_token(), headers=other)[0] == 401


def test_two_gatekeepers_share_the_count(make_hub: MakeHub, tmp_path: Path) -> None:
    env = {"HFGIT_AUTH_MAX_FAILURES_CLIENT": "6"}
    data_dir = tmp_path / "shared" / "data"
    one = make_hub(data_dir=data_dir, env=env, workers=1)
    two = make_hub(data_dir=data_dir, env=env, workers=1)
    user = one.make_user()
    rid = one.make_repo(f"{user}/r", private=True)
    paths = [f"{hub.repo_url(rid)}.git/info/refs?service=git-upload-pack" for hub in (one, two)]
    statuses = [request_from("127.0.0.1", paths[n % 2], token=wrong_token())[0] for n in range(6)]
    assert statuses == [401] * 6
    assert request_from("127.0.0.1", paths[0], token=wrong_token())[0] == 429
    assert request_from("127.0.0.1", paths[1], token=wrong_token())[0] == 429


def test_the_block_lifts_by_itself(make_hub: MakeHub) -> None:
    hub = make_hub(env={"HFGIT_AUTH_MAX_FAILURES_CLIENT": "3", "HFGIT_AUTH_WINDOW": "2"}, workers=1)
    user = hub.make_user()
    refs = f"{hub.repo_url(hub.make_repo(f'{user}/r', private=True))}.git/info/refs"
    refs += "?service=git-upload-pack"
    statuses = [request_from("127.0.0.1", refs, token=wrong_token())[0] for _ in range(4)]
    assert statuses == [401, 401, 401, 429]
    time.sleep(2.5)
    assert request_from("127.0.0.1", refs, token=wrong_token())[0] == 401
