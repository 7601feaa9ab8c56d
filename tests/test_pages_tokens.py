"""The token settings pages in a real browser (Debian's chromium through Playwright).

Tokens made on the page are used with the real ``git`` against the same server, so the
page is proven end to end: the value copied is the one that works, a refresh kills the
old value at once, a delete kills the token.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from hfgit import tokens
from hubtest import ROOT, SECRETS, Git, Hub, require_tool, unique

playwright_api = pytest.importorskip("playwright.sync_api")

ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
PASSWORD = "correct horse battery"


@pytest.fixture(scope="module")
def browser() -> Iterator:
    executable = require_tool("chromium", "chromium")
    with playwright_api.sync_playwright() as play:
        instance = play.chromium.launch(
            executable_path=executable, headless=True, args=CHROMIUM_ARGS
        )
        try:
            yield instance
        finally:
            instance.close()


@pytest.fixture
def new_page(browser, hub: Hub) -> Iterator:
    contexts = []

    def make(viewport: dict | None = None):
        context = browser.new_context(
            base_url=hub.url, viewport=viewport or {"width": 1280, "height": 900}
        )
        context.grant_permissions(["clipboard-read", "clipboard-write"], origin=hub.url)
        context.set_default_timeout(15_000)
        contexts.append(context)
        return context.new_page()

    yield make
    for context in contexts:
        context.close()


def log_in(page, user: str, password: str = PASSWORD) -> None:
    page.goto("/settings/tokens")
    assert page.url.endswith("/login?next=/settings/tokens")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.wait_for_url("**/settings/tokens")


def create_token(page, name: str, role: str, scopes=(), expires: str = "") -> str:
    """Fill the New token form; returns the value shown once, as the copy button copies it."""
    details = page.locator("details#new-token")
    if details.get_attribute("open") is None:
        page.locator("details#new-token > summary").click()
    page.get_by_label("Token name").fill(name)
    page.locator(f"#role-{role}").check()
    for index, (kind, entity, perms) in enumerate(scopes):
        page.get_by_label(f"Scope {index + 1} kind").select_option(kind)
        page.get_by_label(f"Scope {index + 1} name").fill(entity)
        row = page.locator(".scope-row").nth(index)
        for perm in perms:
            row.get_by_label(perm).check()
    if expires:
        page.get_by_label("Expires after (days, optional)").fill(expires)
    page.get_by_role("button", name="Create token").click()
    return copy_shown_value(page)


def copy_shown_value(page) -> str:
    page.get_by_role("button", name="Copy").click()
    playwright_api.expect(page.locator("#copy-status")).to_have_text("Copied to the clipboard.")
    copied = page.evaluate("navigator.clipboard.readText()")
    assert copied == page.locator("#token-value").input_value()
    assert tokens.is_well_formed(copied)
    return SECRETS.token(copied)


def token_row(page, name: str):
    return page.locator(f"tr[data-token='{name}']")


def test_tokens_page_end_to_end(hub: Hub, new_page, git: Git, tmp_path: Path) -> None:
    user = hub.make_user(password=PASSWORD)
    private = hub.make_repo(f"{user}/{unique('priv')}", private=True)
    scoped = hub.make_repo(f"{user}/{unique('scoped')}", private=True)
    seed = git.init_worktree(tmp_path / "seed")
    git.run("push", hub.repo_url(private), "main", cwd=seed, token=hub.make_token(user, name="s"))
    hub.accounts.tokens.delete(user, "s")

    page = new_page()
    log_in(page, user)
    playwright_api.expect(page.get_by_text("You have no tokens yet.")).to_be_visible()

    read_value = create_token(page, "laptop-read", "read")
    playwright_api.expect(page.get_by_text("Copy the value now")).to_be_visible()
    git.run("clone", hub.repo_url(private), str(tmp_path / "r"), token=read_value)
    refused = git.run(
        "push", hub.repo_url(private), "main", cwd=seed, token=read_value, check=False
    )
    assert refused.returncode != 0 and "read role" in refused.stderr

    write_value = create_token(page, "ci-write", "write", expires="30")
    git.commit(seed, {"more.txt": "more\n"})
    git.run("push", hub.repo_url(private), "main", cwd=seed, token=write_value)

    fine_value = create_token(
        page,
        "fine",
        "fineGrained",
        scopes=[("model", scoped.repo_id, ["repo.content.read"])],
    )
    git.run("ls-remote", hub.repo_url(scoped), token=fine_value)
    hidden = git.run("ls-remote", hub.repo_url(private), token=fine_value, check=False)
    assert hidden.returncode != 0 and "not found" in hidden.stderr

    # The table: one row per token, role, scope summary, expiry and the last 4 characters.
    values = {"laptop-read": read_value, "ci-write": write_value, "fine": fine_value}
    for name, value in values.items():
        playwright_api.expect(token_row(page, name)).to_contain_text(value[-4:])
    playwright_api.expect(token_row(page, "fine")).to_contain_text(f"model {scoped.repo_id}: read")
    playwright_api.expect(token_row(page, "ci-write")).not_to_contain_text("never")
    # A reload shows no value any more.
    page.goto("/settings/tokens")
    assert page.locator("#token-value").count() == 0
    assert not any(value in page.content() for value in values.values())

    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "tokens-desktop.png"), full_page=True)
    phone = new_page({"width": 390, "height": 844})
    log_in(phone, user)
    phone.locator("details#new-token > summary").click()
    phone.locator("#role-fineGrained").check()
    phone.screenshot(path=str(ARTIFACTS / "tokens-phone.png"), full_page=True)

    # Refresh: confirm, the new value is shown once, same name and scopes, old value dead.
    before = {t.name: t for t in hub.accounts.tokens.list(user)}["fine"]
    token_row(page, "fine").get_by_role("link", name="Refresh").click()
    playwright_api.expect(
        page.get_by_role("heading", name=re.compile("Refresh token"))
    ).to_be_visible()
    page.get_by_role("button", name="Refresh token").click()
    playwright_api.expect(page.get_by_text("The previous value no longer works.")).to_be_visible()
    new_fine = copy_shown_value(page)
    assert new_fine != fine_value
    after = {t.name: t for t in hub.accounts.tokens.list(user)}["fine"]
    assert (after.id, after.role, after.scopes) == (before.id, before.role, before.scopes)
    dead = git.run(
        "clone", hub.repo_url(scoped), str(tmp_path / "old"), token=fine_value, check=False
    )
    assert dead.returncode != 0 and "Authentication failed" in dead.stderr
    git.run("ls-remote", hub.repo_url(scoped), token=new_fine)

    # Delete: confirm, the row is gone, the value is dead.
    token_row(page, "ci-write").get_by_role("link", name="Delete").click()
    page.get_by_role("button", name="Delete token").click()
    playwright_api.expect(page.get_by_text("Token 'ci-write' deleted.")).to_be_visible()
    assert token_row(page, "ci-write").count() == 0
    gone = git.run("ls-remote", hub.repo_url(private), token=write_value, check=False)
    assert gone.returncode != 0 and "Authentication failed" in gone.stderr
    assert sorted(t.name for t in hub.accounts.tokens.list(user)) == ["fine", "laptop-read"]


def test_each_token_shows_its_last_use(hub: Hub, new_page, git: Git) -> None:
    user = hub.make_user(password=PASSWORD)
    rid = hub.make_repo(f"{user}/{unique('r')}", private=True)
    page = new_page()
    log_in(page, user)
    used = create_token(page, "used", "read")
    create_token(page, "idle", "read")

    def last_used(name: str):
        return token_row(page, name).locator("td[data-label='Last used']")

    playwright_api.expect(last_used("used")).to_have_text("never")
    git.run("ls-remote", hub.repo_url(rid), token=used)
    page.goto("/settings/tokens")
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    playwright_api.expect(last_used("used")).to_have_text(re.compile(rf"{today} \d\d:\d\d UTC"))
    playwright_api.expect(last_used("idle")).to_have_text("never")


def test_new_token_form_errors_keep_input(hub: Hub, new_page) -> None:
    user = hub.make_user(password=PASSWORD)
    page = new_page()
    log_in(page, user)
    create_token(page, "dup", "read")
    page.locator("details#new-token > summary").click()
    page.get_by_label("Token name").fill("dup")
    page.locator("#role-write").check()
    page.get_by_role("button", name="Create token").click()
    playwright_api.expect(page.get_by_role("alert")).to_contain_text("already has a token named")
    assert page.get_by_label("Token name").input_value() == "dup"

    page.get_by_label("Token name").fill("no-scope")
    page.locator("#role-fineGrained").check()
    page.get_by_role("button", name="Create token").click()
    playwright_api.expect(page.get_by_role("alert")).to_contain_text("needs at least one scope")

    missing = f"{user}/{unique('nope')}"
    page.get_by_label("Scope 2 kind").select_option("model")
    page.get_by_label("Scope 2 name").fill(missing)
    page.locator(".scope-row").nth(1).get_by_label("repo.write").check()
    page.get_by_role("button", name="Add a scope row").click()
    assert page.locator(".scope-row").count() == 4
    assert page.get_by_label("Scope 2 name").input_value() == missing
    page.get_by_role("button", name="Create token").click()
    playwright_api.expect(page.get_by_role("alert")).to_contain_text(f"No model named {missing}")
    assert [t.name for t in hub.accounts.tokens.list(user)] == ["dup"]


def test_csrf_missing_or_wrong_is_refused(hub: Hub, new_page) -> None:
    user = hub.make_user(password=PASSWORD)
    page = new_page()
    log_in(page, user)
    form = {"name": "sneaky", "role": "write"}
    for extra in ({}, {"csrf_token": "forged"}):
        answer = page.request.post("/settings/tokens/new", form={**form, **extra})
        assert answer.status == 403
        assert "not sent from this site" in answer.text()
    assert hub.accounts.tokens.list(user) == []
    # The same form with the page's token works, so the refusal was the CSRF check.
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    answer = page.request.post("/settings/tokens/new", form={**form, "csrf_token": csrf})
    assert answer.status == 200
    assert [t.name for t in hub.accounts.tokens.list(user)] == ["sneaky"]
    logout = page.request.post("/logout", form={}, max_redirects=0)
    assert logout.status == 403


def test_another_users_token_is_not_found(hub: Hub, new_page, git: Git) -> None:
    alice = hub.make_user(password=PASSWORD)
    bob = hub.make_user()
    repo = hub.make_repo(f"{bob}/{unique('r')}", private=True)
    bob_value = hub.make_token(bob, "read", name="bobs")
    bob_id = hub.accounts.tokens.list(bob)[0].id
    page = new_page()
    log_in(page, alice)
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    for action in ("refresh", "delete"):
        shown = page.goto(f"/settings/tokens/{bob_id}/{action}")
        assert shown is not None and shown.status == 404
        answer = page.request.post(f"/settings/tokens/{bob_id}/{action}", form={"csrf_token": csrf})
        assert answer.status == 404
    git.run("ls-remote", hub.repo_url(repo), token=bob_value)
    assert [t.name for t in hub.accounts.tokens.list(bob)] == ["bobs"]


def test_login_logout_and_session_cookie(hub: Hub, new_page) -> None:
    user = hub.make_user(password=PASSWORD)
    page = new_page()
    page.goto("/login")
    page.get_by_label("Username").fill(user)
    page.get_by_label("Password").fill("wrong password")
    page.get_by_role("button", name="Log in").click()
    playwright_api.expect(page.get_by_role("alert")).to_have_text("Wrong username or password.")
    log_in(page, user)
    cookie = {c["name"]: c for c in page.context.cookies()}["hfgit_session"]
    assert cookie["httpOnly"] and cookie["sameSite"] == "Lax" and not cookie["secure"]
    # A tampered cookie is no session at all.
    page.context.add_cookies([{**cookie, "value": cookie["value"][:-2] + "xx"}])
    page.goto("/settings/tokens")
    assert "/login" in page.url
    log_in(page, user)
    page.get_by_role("button", name="Log out").click()
    page.wait_for_url("**/login")
    page.goto("/settings/tokens")
    assert "/login" in page.url


def test_user_passwd_from_stdin_ends_old_sessions(hub: Hub, new_page) -> None:
    user = hub.make_user(password=PASSWORD)
    page = new_page()
    log_in(page, user)
    short = hub.cli("user", "passwd", user, input="short\n", check=False)
    assert short.returncode != 0 and "at least 8 characters" in short.stderr
    page.goto("/settings/tokens")
    assert page.url.endswith("/settings/tokens")  # the failed change kept the password

    hub.cli("user", "passwd", user, input="a brand new password\n")
    page.goto("/settings/tokens")
    assert "/login" in page.url  # the session opened with the old password is over
    log_in(page, user, "a brand new password")
