"""The real ``huggingface_hub`` client against a running hfgit (gunicorn, 2 workers).

Each call must raise exactly the exception it raises against the Hub, so code written for
the Hub handles our answers unchanged.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest
from huggingface_hub import HfApi
from huggingface_hub.errors import (
    BadRequestError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
)

from hfgit.names import RepoId
from hubtest import Git, Hub, NoRedirect, http_request, unique


def api(hub: Hub, token: str | bool) -> HfApi:
    return HfApi(endpoint=hub.url, token=token)


def raw(
    hub: Hub, method: str, path: str, token: str | None = None, body: object = None
) -> tuple[int, dict, object]:
    """A plain HTTP call, for paths huggingface_hub has no method for."""
    data = None if body is None else json.dumps(body).encode()
    headers = {} if data is None else {"Content-Type": "application/json"}
    status, answer_headers, answer = http_request(
        method, f"{hub.url}{path}", token=token or None, bearer=True, body=data, headers=headers
    )
    return status, answer_headers, json.loads(answer or b"null")


def status_of(error: HfHubHTTPError) -> int:
    assert error.response is not None
    return error.response.status_code


@pytest.fixture(scope="module")
def people(hub: Hub) -> dict[str, str]:
    alice, bob, carol = hub.make_user(), hub.make_user(), hub.make_user()
    org = hub.make_org(members={alice: "admin", bob: "read", carol: "write"})
    return {"alice": alice, "bob": bob, "carol": carol, "org": org}


# whoami


def test_whoami_read_and_write_tokens(hub: Hub, people: dict[str, str]) -> None:
    alice = people["alice"]
    for role in ("read", "write"):
        name = unique("who")
        info = api(hub, hub.make_token(alice, role, name=name)).whoami()
        assert info["type"] == "user"
        assert info["name"] == alice
        assert info["auth"]["type"] == "access_token"
        access = info["auth"]["accessToken"]
        assert access["displayName"] == name
        assert access["role"] == role
        assert access["createdAt"].endswith("Z")
        assert "fineGrained" not in access
        assert "expiresAt" not in access
        assert {"name": people["org"], "roleInOrg": "admin"}.items() <= info["orgs"][0].items()


def test_whoami_reports_expiry(hub: Hub, people: dict[str, str]) -> None:
    token = hub.make_token(people["alice"], "read", expires_in_days=2)
    access = api(hub, token).whoami()["auth"]["accessToken"]
    created = datetime.fromisoformat(access["createdAt"])
    expires = datetime.fromisoformat(access["expiresAt"])
    assert (expires - created).total_seconds() == pytest.approx(2 * 86400, abs=1)


def test_whoami_fine_grained_lists_scopes(hub: Hub, people: dict[str, str]) -> None:
    alice, org = people["alice"], people["org"]
    repo = hub.make_repo(f"{alice}/{unique('fg')}")
    token = hub.make_token(
        alice,
        "fineGrained",
        scopes=[f"org:{org}=repo.write", f"model:{repo.repo_id}=repo.content.read"],
        can_read_gated=True,
    )
    fine = api(hub, token).whoami()["auth"]["accessToken"]["fineGrained"]
    assert fine["canReadGatedRepos"] is True
    assert fine["global"] == []
    scoped = {(s["entity"]["type"], s["entity"]["name"]): s for s in fine["scoped"]}
    assert scoped[("org", org)]["permissions"] == ["repo.write"]
    assert scoped[("model", repo.repo_id)]["permissions"] == ["repo.content.read"]
    assert all(len(s["entity"]["_id"]) == 24 for s in fine["scoped"])


def test_whoami_refuses_dead_token(hub: Hub, people: dict[str, str]) -> None:
    name = unique("dead")
    token = hub.make_token(people["alice"], "read", name=name)
    hub.accounts.tokens.delete(people["alice"], name)
    with pytest.raises(HfHubHTTPError) as caught:
        api(hub, token).whoami()
    assert status_of(caught.value) == 401
    assert caught.value.response.headers["X-Error-Message"] == (
        "Invalid credentials in Authorization header"
    )


# auth-check


def test_auth_check_raises_what_the_hub_raises(hub: Hub, people: dict[str, str]) -> None:
    alice, bob = people["alice"], people["bob"]
    public = hub.make_repo(f"{alice}/{unique('pub')}")
    private = hub.make_repo(f"{alice}/{unique('priv')}", private=True)
    gated = hub.make_repo(f"{alice}/{unique('gated')}", gated="manual")
    missing = f"{alice}/{unique('missing')}"
    owner = api(hub, hub.make_token(alice, "write"))
    owner_read = api(hub, hub.make_token(alice, "read"))
    other = api(hub, hub.make_token(bob, "write"))
    anonymous = api(hub, False)

    for repo in (public, private, gated):
        owner.auth_check(repo.repo_id)
        owner.auth_check(repo.repo_id, write=True)
        owner_read.auth_check(repo.repo_id)

    other.auth_check(public.repo_id)
    anonymous.auth_check(public.repo_id)
    # Readable but not writable: a plain 403 with the reason, not "not found".
    for client, repo in ((other, public), (owner_read, public), (owner_read, private)):
        with pytest.raises(HfHubHTTPError) as caught:
            client.auth_check(repo.repo_id, write=True)
        assert status_of(caught.value) == 403
        assert not isinstance(caught.value, RepositoryNotFoundError)
        assert "write" in caught.value.response.headers["X-Error-Message"]

    # Hidden and missing look the same.
    for client in (other, anonymous):
        for repo_id in (private.repo_id, missing):
            for write in (False, True):
                with pytest.raises(RepositoryNotFoundError) as caught:
                    client.auth_check(repo_id, write=write)
                assert not isinstance(caught.value, GatedRepoError)

    for client in (other, anonymous):
        with pytest.raises(GatedRepoError):
            client.auth_check(gated.repo_id)


def test_auth_check_per_repo_type(hub: Hub, people: dict[str, str]) -> None:
    alice = people["alice"]
    dataset = hub.make_repo(f"{alice}/{unique('ds')}", type="dataset", private=True)
    client = api(hub, hub.make_token(alice, "write"))
    client.auth_check(dataset.repo_id, repo_type="dataset", write=True)
    with pytest.raises(RepositoryNotFoundError):
        client.auth_check(dataset.repo_id, repo_type="model")


def test_auth_check_respects_fine_grained_scopes(hub: Hub, people: dict[str, str]) -> None:
    alice = people["alice"]
    scoped = hub.make_repo(f"{alice}/{unique('scoped')}", private=True)
    other = hub.make_repo(f"{alice}/{unique('other')}", private=True)
    client = api(
        hub,
        hub.make_token(alice, "fineGrained", scopes=[f"model:{scoped.repo_id}=repo.content.read"]),
    )
    client.auth_check(scoped.repo_id)
    with pytest.raises(HfHubHTTPError) as caught:
        client.auth_check(scoped.repo_id, write=True)
    assert status_of(caught.value) == 403
    with pytest.raises(RepositoryNotFoundError):
        client.auth_check(other.repo_id)


# create, settings, delete


def test_create_repo_in_own_namespace(
    hub: Hub, people: dict[str, str], git: Git, tmp_path: Path
) -> None:
    alice = people["alice"]
    token = hub.make_token(alice, "write")
    client = api(hub, token)
    private_name, public_name = unique("new"), unique("new")
    url = client.create_repo(private_name, private=True)
    assert url.repo_id == f"{alice}/{private_name}"
    assert str(url) == f"{hub.url}/{alice}/{private_name}"
    client.create_repo(f"{alice}/{public_name}", visibility="public", repo_type="dataset")

    private = hub.accounts.repos.find(RepoId("model", alice, private_name))
    public = hub.accounts.repos.find(RepoId("dataset", alice, public_name))
    assert private is not None and private.facts.private
    assert public is not None and not public.facts.private
    assert private.facts.creator == alice

    # Existing: 409, which exist_ok accepts.
    with pytest.raises(HfHubHTTPError) as caught:
        client.create_repo(private_name)
    assert status_of(caught.value) == 409
    client.create_repo(private_name, exist_ok=True)

    # The new repository is served to git right away.
    result = git.run(
        "clone", hub.repo_url(f"{alice}/{private_name}"), str(tmp_path / "c"), token=token
    )
    assert "empty repository" in result.stderr


def test_create_repo_refusals(hub: Hub, people: dict[str, str]) -> None:
    alice, bob, org = people["alice"], people["bob"], people["org"]
    cases = [
        (api(hub, hub.make_token(alice, "read")), f"{alice}/{unique('r')}", "read role"),
        (api(hub, hub.make_token(alice, "write")), f"{bob}/{unique('r')}", "namespace"),
        (api(hub, hub.make_token(bob, "write")), f"{org}/{unique('r')}", "you have read"),
        (api(hub, hub.make_token(bob, "write")), f"nobody-{unique('o')}/x", "organization"),
        (
            api(hub, hub.make_token(alice, "fineGrained", scopes=[f"user:{alice}=repo.write"])),
            f"{org}/{unique('r')}",
            "fine-grained",
        ),
    ]
    for client, repo_id, reason in cases:
        with pytest.raises(HfHubHTTPError) as caught:
            client.create_repo(repo_id)
        assert status_of(caught.value) == 403, repo_id
        message = caught.value.response.headers["X-Error-Message"]
        assert reason.lower() in message.lower() or "cannot create" in message.lower(), message
        assert hub.accounts.repos.find(RepoId.parse(repo_id)) is None

    with pytest.raises(HfHubHTTPError) as caught:
        api(hub, False).create_repo(f"{alice}/{unique('anon')}")
    assert status_of(caught.value) == 401


def test_create_repo_in_org(hub: Hub, people: dict[str, str]) -> None:
    org, carol, alice = people["org"], people["carol"], people["alice"]
    name = unique("orgrepo")
    api(hub, hub.make_token(carol, "write")).create_repo(f"{org}/{name}", private=True)
    record = hub.accounts.repos.find(RepoId("model", org, name))
    assert record is not None and record.facts.private and record.facts.creator == carol

    fine = hub.make_token(alice, "fineGrained", scopes=[f"org:{org}=repo.write"])
    api(hub, fine).create_repo(f"{org}/{unique('fg')}", repo_type="space", space_sdk="static")


def test_create_repo_bad_input_creates_nothing(hub: Hub, people: dict[str, str]) -> None:
    alice = people["alice"]
    token = hub.make_token(alice, "write")
    # huggingface_hub validates names itself; other clients may not.
    status, headers, _ = raw(hub, "POST", "/api/repos/create", token, body={"name": "bad..name"})
    assert status == 400 and "bad..name" in headers["X-Error-Message"]
    assert not [r for r in hub.accounts.repos.list(alice) if "bad" in r.facts.name]
    status, headers, _ = raw(hub, "POST", "/api/repos/create", token, body=["not", "an", "object"])
    assert status == 400 and "JSON object" in headers["X-Error-Message"]
    status, _, _ = raw(hub, "POST", "/api/repos/create", token, body={"name": "x", "type": "nope"})
    assert status == 400


def test_update_repo_settings(hub: Hub, people: dict[str, str]) -> None:
    alice, bob = people["alice"], people["bob"]
    repo = hub.make_repo(f"{alice}/{unique('set')}")
    owner = api(hub, hub.make_token(alice, "write"))
    other = api(hub, hub.make_token(bob, "write"))
    other.auth_check(repo.repo_id)

    owner.update_repo_settings(repo.repo_id, gated="manual")
    with pytest.raises(GatedRepoError):
        other.auth_check(repo.repo_id)
    owner.update_repo_settings(repo.repo_id, gated=False, private=True)
    facts = hub.accounts.repos.get(repo).facts
    assert facts.private and facts.gated == "off"
    with pytest.raises(RepositoryNotFoundError):
        other.auth_check(repo.repo_id)
    owner.update_repo_settings(repo.repo_id, visibility="public")
    other.auth_check(repo.repo_id)

    with pytest.raises(HfHubHTTPError) as caught:
        other.update_repo_settings(repo.repo_id, private=True)
    assert status_of(caught.value) == 403
    with pytest.raises(HfHubHTTPError) as caught:
        api(hub, hub.make_token(alice, "read")).update_repo_settings(repo.repo_id, private=True)
    assert status_of(caught.value) == 403
    status, _, _ = raw(
        hub, "PUT", f"/api/models/{repo.repo_id}/settings", owner.token, body={"gated": "sometimes"}
    )
    assert status == 400
    assert not hub.accounts.repos.get(repo).facts.private


def test_delete_repo(hub: Hub, people: dict[str, str]) -> None:
    alice, bob, org = people["alice"], people["bob"], people["org"]
    repo = hub.make_repo(f"{alice}/{unique('del')}")
    org_repo = hub.make_repo(f"{org}/{unique('del')}")
    owner = api(hub, hub.make_token(alice, "write"))

    with pytest.raises(HfHubHTTPError) as caught:
        api(hub, hub.make_token(bob, "write")).delete_repo(org_repo.repo_id)  # read role
    assert status_of(caught.value) == 403
    with pytest.raises(HfHubHTTPError) as caught:
        api(hub, hub.make_token(alice, "read")).delete_repo(repo.repo_id)
    assert status_of(caught.value) == 403
    assert hub.accounts.repos.find(repo) is not None

    owner.delete_repo(repo.repo_id)
    owner.delete_repo(org_repo.repo_id)
    assert hub.accounts.repos.find(repo) is None and hub.accounts.repos.find(org_repo) is None
    with pytest.raises(RepositoryNotFoundError):
        owner.auth_check(repo.repo_id)
    with pytest.raises(RepositoryNotFoundError):
        owner.delete_repo(repo.repo_id)
    owner.delete_repo(repo.repo_id, missing_ok=True)


# Gated access requests


def test_gated_access_request_flow(
    hub: Hub, people: dict[str, str], git: Git, tmp_path: Path
) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    repo = hub.make_repo(f"{alice}/{unique('gate')}", gated="manual")
    owner = api(hub, hub.make_token(alice, "write"))
    bob_token = hub.make_token(bob, "read")
    bob_api = api(hub, bob_token)

    with pytest.raises(GatedRepoError):
        bob_api.auth_check(repo.repo_id)
    status, _, body = raw(hub, "POST", f"/api/models/{repo.repo_id}/ask-access", bob_token, {})
    assert (status, body) == (200, {"status": "pending"})
    pending = list(owner.list_pending_access_requests(repo.repo_id))
    assert [(r.username, r.status) for r in pending] == [(bob, "pending")]
    assert len(pending[0].request_id) == 24 and pending[0].timestamp.tzinfo is not None
    with pytest.raises(GatedRepoError):
        bob_api.auth_check(repo.repo_id)

    owner.accept_access_request(repo.repo_id, bob)
    bob_api.auth_check(repo.repo_id)
    git.run("clone", hub.repo_url(repo), str(tmp_path / "clone"), token=bob_token)
    assert [r.username for r in owner.list_accepted_access_requests(repo.repo_id)] == [bob]
    assert list(owner.list_pending_access_requests(repo.repo_id)) == []

    # Already accepted: the Hub answers 404.
    with pytest.raises(HfHubHTTPError) as caught:
        owner.accept_access_request(repo.repo_id, bob)
    assert status_of(caught.value) == 404

    owner.reject_access_request(
        repo.repo_id, request_id=pending[0].request_id, rejection_reason="no"
    )
    with pytest.raises(GatedRepoError):
        bob_api.auth_check(repo.repo_id)
    assert [r.username for r in owner.list_rejected_access_requests(repo.repo_id)] == [bob]
    # Asking again does not undo a rejection.
    status, _, body = raw(hub, "POST", f"/api/models/{repo.repo_id}/ask-access", bob_token, {})
    assert body == {"status": "rejected"}

    owner.cancel_access_request(repo.repo_id, bob)
    assert [r.username for r in owner.list_pending_access_requests(repo.repo_id)] == [bob]

    owner.grant_access(repo.repo_id, carol)
    api(hub, hub.make_token(carol, "read")).auth_check(repo.repo_id)
    with pytest.raises(BadRequestError):
        owner.grant_access(repo.repo_id, carol)
    with pytest.raises(HfHubHTTPError) as caught:
        owner.grant_access(repo.repo_id, unique("ghost"))
    assert status_of(caught.value) == 404


def test_gated_access_auto_and_permissions(hub: Hub, people: dict[str, str]) -> None:
    alice, bob, carol = people["alice"], people["bob"], people["carol"]
    auto = hub.make_repo(f"{alice}/{unique('auto')}", gated="auto")
    plain = hub.make_repo(f"{alice}/{unique('plain')}")
    bob_token = hub.make_token(bob, "read")
    status, _, body = raw(hub, "POST", f"/api/models/{auto.repo_id}/ask-access", bob_token, {})
    assert (status, body) == (200, {"status": "accepted"})
    api(hub, bob_token).auth_check(auto.repo_id)

    # canReadGatedRepos decides whether a fine-grained token uses the grant.
    with_gated = hub.make_token(bob, "fineGrained", can_read_gated=True)
    without = hub.make_token(bob, "fineGrained", scopes=[f"user:{bob}=repo.content.read"])
    api(hub, with_gated).auth_check(auto.repo_id)
    with pytest.raises(GatedRepoError):
        api(hub, without).auth_check(auto.repo_id)

    # Managing requests needs write on the repo: a read token or a stranger is refused.
    for token in (hub.make_token(alice, "read"), hub.make_token(carol, "write")):
        with pytest.raises(HfHubHTTPError) as caught:
            list(api(hub, token).list_accepted_access_requests(auto.repo_id))
        assert status_of(caught.value) == 403
    with pytest.raises(BadRequestError):
        list(api(hub, hub.make_token(alice, "write")).list_pending_access_requests(plain.repo_id))
    status, _, _ = raw(hub, "POST", f"/api/models/{plain.repo_id}/ask-access", bob_token, {})
    assert status == 400
    status, _, _ = raw(hub, "POST", f"/api/models/{auto.repo_id}/ask-access", None, {})
    assert status == 401


def test_tokens_cannot_manage_tokens(hub: Hub, people: dict[str, str]) -> None:
    token = hub.make_token(people["alice"], "write")
    for method, path in (
        ("GET", "/api/settings/tokens"),
        ("POST", "/api/settings/tokens"),
        ("POST", "/api/tokens"),
    ):
        status, _, _ = raw(hub, method, path, token, body={} if method == "POST" else None)
        assert status in (404, 405), path
    # The settings pages ignore a token: they want a logged-in browser session.
    request = urllib.request.Request(f"{hub.url}/settings/tokens")
    request.add_header("Authorization", f"Bearer {token}")
    opener = urllib.request.build_opener(NoRedirect)
    with pytest.raises(urllib.error.HTTPError) as caught:
        opener.open(request, timeout=30)
    assert caught.value.code == 303
    assert caught.value.headers["Location"].startswith("/login")
