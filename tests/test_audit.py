"""Every change is audited once, by the accounts part that makes it, with who made it.

Driven through the real ``hfgit`` command line (an administrator: no user, no token), the
real ``huggingface_hub`` client and the settings pages against the running server.
"""

from __future__ import annotations

import json
import re
import urllib.parse
import urllib.request
from http.cookiejar import CookieJar

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import HfHubHTTPError

from hfgit.names import RepoId
from hubtest import Hub, unique

PASSWORD = "correct horse battery"


class Audit:
    """The audit rows written since the last look, oldest first, as comparable tuples.

    ``token.use`` rows are left out: they come from authenticating, not from the change.
    """

    def __init__(self, hub: Hub) -> None:
        self.hub = hub
        latest = hub.accounts.audit.events(1)
        self.mark = latest[0].id if latest else 0

    def new(self) -> list[tuple]:
        rows = [e for e in reversed(self.hub.accounts.audit.events(200)) if e.id > self.mark]
        if rows:
            self.mark = rows[-1].id
        return [
            (e.event, e.user_id, e.token_id, e.repo_id, e.detail)
            for e in rows
            if e.event != "token.use"
        ]


def token_id(hub: Hub, user: str, name: str) -> int:
    return next(t.id for t in hub.accounts.tokens.list(user) if t.name == name)


# The command line: an administrator, recorded with no user and no token


def test_cli_user_and_org_changes(hub: Hub) -> None:
    audit = Audit(hub)
    user, org = unique("u"), unique("o")
    hub.cli("user", "add", user)
    assert audit.new() == [("user.create", None, None, None, {"user": user})]
    hub.cli("user", "passwd", user, input=f"{PASSWORD}\n")
    assert audit.new() == [("password.set", None, None, None, {"user": user})]
    hub.cli("org", "add", org)
    assert audit.new() == [("org.create", None, None, None, {"org": org})]
    hub.cli("org", "member", org, user, "--role", "write")
    hub.cli("org", "member", org, user, "--role", "admin")
    assert audit.new() == [
        ("member.set", None, None, None, {"org": org, "user": user, "role": "write"}),
        ("member.set", None, None, None, {"org": org, "user": user, "role": "admin"}),
    ]
    hub.cli("org", "member", org, user, "--remove")
    assert audit.new() == [("member.remove", None, None, None, {"org": org, "user": user})]
    # A change that fails leaves no row: the event is written in the change's transaction.
    assert hub.cli("org", "member", org, user, "--remove", check=False).returncode == 1
    assert hub.cli("user", "add", user, check=False).returncode == 1
    assert audit.new() == []


def test_cli_repo_changes(hub: Hub) -> None:
    owner = hub.make_user()
    name = f"{owner}/{unique('r')}"
    rid = RepoId.parse(name, "dataset")
    audit = Audit(hub)
    hub.cli("repo", "create", "--type", "dataset", name, "--private")
    record = hub.accounts.repos.get(rid)
    assert audit.new() == [
        (
            "repo.create",
            None,
            None,
            record.id,
            {"repo": f"dataset {name}", "private": True, "gated": "off"},
        )
    ]
    assert hub.cli("repo", "create", "--type", "dataset", name, check=False).returncode == 1
    assert audit.new() == []
    hub.cli("repo", "set", "--type", "dataset", name, "--public", "--gated", "manual")
    hub.cli("repo", "set", "--type", "dataset", name)  # nothing to change
    assert audit.new() == [
        (
            "repo.update",
            None,
            None,
            record.id,
            {"repo": f"dataset {name}", "private": False, "gated": "manual"},
        )
    ]
    hub.cli("repo", "delete", "--type", "dataset", name)
    assert hub.accounts.repos.find(rid) is None
    assert audit.new() == [("repo.delete", None, None, record.id, {"repo": f"dataset {name}"})]


def test_cli_token_changes(hub: Hub) -> None:
    user = hub.make_user()
    audit = Audit(hub)
    hub.cli("token", "create", user, "--name", "ci", "--role", "read")
    ident = token_id(hub, user, "ci")
    subject = {"user": user, "token": "ci", "token_id": ident}
    assert audit.new() == [("token.create", None, None, None, {**subject, "role": "read"})]
    hub.cli("token", "refresh", user, "ci")
    hub.cli("token", "delete", user, "ci")
    assert audit.new() == [
        ("token.refresh", None, None, None, subject),
        ("token.delete", None, None, None, subject),
    ]


def test_cli_access_grant(hub: Hub) -> None:
    owner, reader = hub.make_user(), hub.make_user()
    rid = hub.make_repo(f"{owner}/{unique('g')}", gated="manual")
    record = hub.accounts.repos.get(rid)
    audit = Audit(hub)
    hub.cli("access", "grant", rid.repo_id, reader)
    assert audit.new() == [("access.grant", None, None, record.id, {"user": reader})]


# The HTTP API: the caller's user and token


def test_api_repo_create_settings_delete(hub: Hub) -> None:
    owner = hub.make_user()
    client = HfApi(endpoint=hub.url, token=hub.make_token(owner, "write", name="api"))
    reader = HfApi(endpoint=hub.url, token=hub.make_token(owner, "read"))
    who = (hub.accounts.users.get(owner).id, token_id(hub, owner, "api"))
    name = f"{owner}/{unique('r')}"
    audit = Audit(hub)

    client.create_repo(name, private=True)
    record = hub.accounts.repos.get(RepoId.parse(name))
    assert audit.new() == [
        ("repo.create", *who, record.id, {"repo": f"model {name}", "private": True, "gated": "off"})
    ]
    client.create_repo(name, exist_ok=True)
    assert audit.new() == []

    client.update_repo_settings(name, gated="auto", private=False)
    assert audit.new() == [
        (
            "repo.update",
            *who,
            record.id,
            {"repo": f"model {name}", "private": False, "gated": "auto"},
        )
    ]

    with pytest.raises(HfHubHTTPError):
        reader.delete_repo(name)
    assert audit.new() == []
    client.delete_repo(name)
    assert audit.new() == [("repo.delete", *who, record.id, {"repo": f"model {name}"})]


def _ask_access(hub: Hub, rid: RepoId, token: str) -> dict:
    request = urllib.request.Request(
        f"{hub.url}/api/models/{rid.repo_id}/ask-access", data=b"{}", method="POST"
    )
    request.add_header("Authorization", f"Bearer {token}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def test_api_gated_access(hub: Hub) -> None:
    owner, asker, guest = hub.make_user(), hub.make_user(), hub.make_user()
    rid = hub.make_repo(f"{owner}/{unique('g')}", gated="manual")
    record = hub.accounts.repos.get(rid)
    manager = HfApi(endpoint=hub.url, token=hub.make_token(owner, "write", name="manage"))
    by_owner = (hub.accounts.users.get(owner).id, token_id(hub, owner, "manage"))
    asker_token = hub.make_token(asker, "read", name="ask")
    by_asker = (hub.accounts.users.get(asker).id, token_id(hub, asker, "ask"))
    audit = Audit(hub)

    assert _ask_access(hub, rid, asker_token) == {"status": "pending"}
    assert _ask_access(hub, rid, asker_token) == {"status": "pending"}  # no change
    assert audit.new() == [
        ("access.request", *by_asker, record.id, {"user": asker, "status": "pending"})
    ]
    manager.accept_access_request(rid.repo_id, asker)
    manager.reject_access_request(rid.repo_id, asker, rejection_reason="no")
    manager.grant_access(rid.repo_id, guest)
    assert audit.new() == [
        ("access.accepted", *by_owner, record.id, {"user": asker}),
        ("access.rejected", *by_owner, record.id, {"user": asker}),
        ("access.grant", *by_owner, record.id, {"user": guest}),
    ]


# The settings pages: the logged-in user, no token


class Browser:
    """Just enough of a browser for the settings forms: cookies and the CSRF field."""

    def __init__(self, url: str) -> None:
        self.url = url
        jar = CookieJar()
        self.opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        self.csrf = ""

    def open(self, path: str, form: dict[str, str] | None = None) -> str:
        data = None
        if form is not None:
            data = urllib.parse.urlencode({"csrf_token": self.csrf, **form}).encode()
        with self.opener.open(f"{self.url}{path}", data, timeout=30) as response:
            text = response.read().decode()
        match = re.search(r'name="csrf_token" value="([^"]+)"', text)
        if match:
            self.csrf = match.group(1)
        return text


def test_pages_token_changes(hub: Hub) -> None:
    user = hub.make_user(password=PASSWORD)
    browser = Browser(hub.url)
    browser.open("/login")
    browser.open("/login", {"username": user, "password": PASSWORD})
    audit = Audit(hub)

    browser.open("/settings/tokens/new", {"name": "laptop", "role": "read", "rows": "1"})
    ident = token_id(hub, user, "laptop")
    by_user = (hub.accounts.users.get(user).id, None)
    subject = {"user": user, "token": "laptop", "token_id": ident}
    assert audit.new() == [("token.create", *by_user, None, {**subject, "role": "read"})]
    browser.open(f"/settings/tokens/{ident}/refresh", {})
    browser.open(f"/settings/tokens/{ident}/delete", {})
    assert audit.new() == [
        ("token.refresh", *by_user, None, subject),
        ("token.delete", *by_user, None, subject),
    ]
