"""Absolute URLs the server hands out come from its configuration, never from the client.

An LFS href carries a signature to wherever it points; an API ``url`` is where clients
go next. A crafted ``Host`` or ``X-Forwarded-Host`` must not end up in either.
"""

from __future__ import annotations

import json

from hubtest import Hub, MakeHub, http_request, run_cli, unique
from lfs_support import MEDIA, blob

CRAFTED = {"Host": "evil.example", "X-Forwarded-Host": "evil2.example"}


def upload_hrefs(hub: Hub, headers: dict[str, str]) -> list[str]:
    user = hub.make_user()
    repo = hub.make_repo(f"{user}/{unique('r')}")
    token = hub.make_token(user, "write")
    _, item = blob(100)
    body = {"operation": "upload", "transfers": ["basic"], "objects": [item]}
    status, _, answer = http_request(
        "POST",
        f"{hub.repo_url(repo)}.git/info/lfs/objects/batch",
        token=token,
        body=json.dumps(body).encode(),
        headers={"Accept": MEDIA, "Content-Type": MEDIA, **headers},
    )
    assert status == 200, answer
    actions = json.loads(answer)["objects"][0]["actions"]
    return [actions["upload"]["href"], actions["verify"]["href"]]


def created_url(hub: Hub, headers: dict[str, str]) -> tuple[str, str]:
    user = hub.make_user()
    token = hub.make_token(user, "write")
    name = unique("m")
    request = json.dumps({"name": name, "organization": user, "type": "model"}).encode()
    answers = []
    for _ in range(2):  # created, then the 409 that carries the URL too
        status, _, answer = http_request(
            "POST",
            f"{hub.url}/api/repos/create",
            token=token,
            bearer=True,
            body=request,
            headers={"Content-Type": "application/json", **headers},
        )
        answers.append((status, json.loads(answer)["url"]))
    assert [status for status, _ in answers] == [200, 409]
    assert answers[0][1] == answers[1][1]
    return answers[0][1], f"{user}/{name}"


def test_crafted_host_headers_never_reach_hrefs_or_urls(hub: Hub) -> None:
    for href in upload_hrefs(hub, CRAFTED):
        assert href.startswith(f"{hub.url}/"), href
    url, repo = created_url(hub, CRAFTED)
    assert url == f"{hub.url}/{repo}"


def test_configured_public_url_and_its_old_name(make_hub: MakeHub) -> None:
    flagged = make_hub(extra_args=["--public-url", "https://git.example.com/hub/"], workers=1)
    for href in upload_hrefs(flagged, CRAFTED):
        assert href.startswith("https://git.example.com/hub/"), href
    url, repo = created_url(flagged, CRAFTED)
    assert url == f"https://git.example.com/hub/{repo}"

    aliased = make_hub(env={"HFGIT_LFS_PUBLIC_URL": "https://lfs.example.org"}, workers=1)
    for href in upload_hrefs(aliased, CRAFTED):
        assert href.startswith("https://lfs.example.org/"), href


def test_trusted_proxy_forwards_the_host(make_hub: MakeHub) -> None:
    proxied = make_hub(env={"HFGIT_TRUST_PROXY": "1"}, workers=1)
    forwarded = {"X-Forwarded-Host": "git.example.net", "X-Forwarded-Proto": "https"}
    for href in upload_hrefs(proxied, forwarded):
        assert href.startswith("https://git.example.net/"), href


def test_a_public_url_that_is_not_one_is_refused(tmp_path) -> None:
    for value in ("ftp://git.example.com", "ftp://user:pw@git.example.com", "git.example.com"):
        result = run_cli(
            "serve", "--data-dir", str(tmp_path), "--public-url", value, check=False, timeout=30
        )
        assert result.returncode == 1
        assert "must look like https://git.example.com" in result.stderr or (
            "must not carry a username" in result.stderr
        )
        assert "pw" not in result.stderr
