"""Login limits and session cookie flags, against a real database and a real server."""

from __future__ import annotations

import pytest

from hfgit.accounts import Accounts
from hfgit.accounts.logins import LoginLimiter
from hubtest import Hub, MakeHub, Visitor

PASSWORD = "correct horse battery"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def test_account_limit_blocks_for_the_window_only(accounts: Accounts) -> None:
    clock = Clock()
    limiter = LoginLimiter(accounts.logins, per_client=10, per_account=3, window=100, clock=clock)
    for _ in range(3):
        assert limiter.retry_after("10.0.0.1", "alice") is None
        limiter.failed("10.0.0.1", "alice")
        clock.now += 10
    # Blocked from any client, until the oldest failure leaves the window.
    assert limiter.retry_after("10.0.0.1", "alice") == 70
    assert limiter.retry_after("10.0.0.2", "ALICE") == 70
    # A browser that logged in as alice before is not held by alice's account limit.
    assert limiter.retry_after("10.0.0.2", "alice", known_device=True) is None
    # Other accounts are unaffected.
    assert limiter.retry_after("10.0.0.1", "bob") is None
    clock.now += 70
    assert limiter.retry_after("10.0.0.1", "alice") is None
    # The window slides: one more failure blocks again, briefly.
    limiter.failed("10.0.0.1", "alice")
    assert limiter.retry_after("10.0.0.1", "alice") == 10
    limiter.succeeded("10.0.0.1", "alice")
    assert limiter.retry_after("10.0.0.1", "alice") is None


def test_client_limit_spans_accounts(accounts: Accounts) -> None:
    clock = Clock()
    limiter = LoginLimiter(accounts.logins, per_client=4, per_account=100, window=60, clock=clock)
    for number in range(4):
        limiter.failed("10.0.0.9", f"user{number}")
    assert limiter.retry_after("10.0.0.9", "someone-else") == 60
    assert limiter.retry_after("10.0.0.9", "someone-else", known_device=True) == 60
    assert limiter.retry_after("10.0.0.10", "someone-else") is None
    clock.now += 61
    assert limiter.retry_after("10.0.0.9", "someone-else") is None


@pytest.fixture
def limited_server(make_hub: MakeHub) -> tuple[str, Accounts]:
    env = {
        "HFGIT_LOGIN_MAX_FAILURES_ACCOUNT": "2",
        "HFGIT_LOGIN_MAX_FAILURES_CLIENT": "50",
        "HFGIT_TRUST_PROXY": "1",
    }
    hub = make_hub(workers=1, env=env)
    return hub.url, hub.accounts


def test_failed_logins_are_limited_but_known_browsers_get_in(limited_server) -> None:
    url, accounts = limited_server
    accounts.users.create_user("alice", PASSWORD)
    owner = Visitor(url, {"X-Forwarded-For": "192.0.2.1"})
    status, headers, _ = owner.login("alice", PASSWORD)
    assert status == 303 and headers["Location"] == "/settings/tokens"

    attacker = Visitor(url, {"X-Forwarded-For": "198.51.100.7"})
    for _ in range(2):
        status, _, text = attacker.login("alice", "guess guess")
        assert status == 401 and "Wrong username or password." in text
    status, headers, text = attacker.login("alice", PASSWORD)
    assert status == 429 and "Too many failed logins" in text
    assert int(headers["Retry-After"]) > 0
    # From another address the account is still held...
    stranger = Visitor(url, {"X-Forwarded-For": "203.0.113.5"})
    assert stranger.login("alice", PASSWORD)[0] == 429
    # ...but the browser alice logged in with before gets in.
    owner.forget_session()
    assert owner.login("alice", PASSWORD)[0] == 303


def test_session_cookie_flags(limited_server, hub: Hub) -> None:
    url, accounts = limited_server
    accounts.users.create_user("carol", PASSWORD)
    status, response_headers, _ = Visitor(url).login("carol", PASSWORD)
    assert status == 303
    session = next(c for c in response_headers.get_all("Set-Cookie") if "hfgit_session=" in c)
    assert "HttpOnly" in session and "SameSite=Lax" in session and "Secure" not in session
    # Behind the trusted TLS proxy the cookie is Secure (so it is never sent over plain http).
    _, response_headers, _ = Visitor(url, {"X-Forwarded-Proto": "https"}).request("/login")
    session = response_headers["Set-Cookie"]
    assert "HttpOnly" in session and "SameSite=Lax" in session and "Secure" in session
    # Without HFGIT_TRUST_PROXY a forged header changes nothing.
    _, response_headers, _ = Visitor(hub.url, {"X-Forwarded-Proto": "https"}).request("/login")
    assert "Secure" not in response_headers["Set-Cookie"]
