"""git's own storage-helper conformance suite (t/lib-credential.sh), run against our helper.

Each test is one of git's ``helper_test`` cases, driven through the real git binary.
Attributes git 2.39 does not forward (``password_expiry_utc``, ``oauth_refresh_token``,
``capability[]``) are sent to the helper through ``git credential-hf`` directly.
"""

from __future__ import annotations

ASKPASS = {"username": "askpass-username", "password": "askpass-password"}


def test_no_existing_data(cred):
    out = cred.fill("protocol=https\nhost=example.com\n")
    assert out["username"] == "askpass-username" and out["password"] == "askpass-password"


def test_store_then_retrieve(cred):
    cred.approve("protocol=https\nhost=example.com\nusername=store-user\npassword=store-pass\n")
    out = cred.fill("protocol=https\nhost=example.com\n")
    assert (out["username"], out["password"]) == ("store-user", "store-pass")


def test_requires_matching_protocol(cred):
    cred.approve("protocol=https\nhost=example.com\nusername=store-user\npassword=store-pass\n")
    out = cred.fill("protocol=http\nhost=example.com\n")
    assert out["password"] == "askpass-password"


def test_requires_matching_host(cred):
    cred.approve("protocol=https\nhost=example.com\nusername=store-user\npassword=store-pass\n")
    out = cred.fill("protocol=https\nhost=other.tld\n")
    assert out["password"] == "askpass-password"


def test_requires_matching_username(cred):
    cred.approve("protocol=https\nhost=example.com\nusername=store-user\npassword=store-pass\n")
    out = cred.fill("protocol=https\nhost=example.com\nusername=other\n")
    assert (out["username"], out["password"]) == ("other", "askpass-password")


def test_requires_matching_path(cred):
    use_path = "credential.usehttppath=true"
    cred.approve(
        "protocol=http\nhost=path.tld\npath=foo.git\nusername=user\npassword=pass\n", use_path
    )
    out = cred.fill("protocol=http\nhost=path.tld\npath=bar.git\n", use_path)
    assert out["password"] == "askpass-password"
    out = cred.fill("protocol=http\nhost=path.tld\npath=foo.git\n", use_path)
    assert out["password"] == "pass"


def test_overwrites_on_store(cred):
    base = "protocol=https\nhost=example.com\nusername=user-overwrite\n"
    cred.approve(base + "password=pass1\n")
    cred.approve(base + "password=pass2\n")
    assert cred.fill(base)["password"] == "pass2"
    cred.reject(base + "password=pass2\n")
    assert cred.fill(base)["password"] == "askpass-password"


def test_can_forget_host(cred):
    cred.approve("protocol=https\nhost=example.com\nusername=store-user\npassword=store-pass\n")
    cred.reject("protocol=https\nhost=example.com\n")
    assert cred.fill("protocol=https\nhost=example.com\n")["password"] == "askpass-password"


def test_multiple_users_kept_apart(cred):
    cred.approve("protocol=https\nhost=example.com\nusername=user1\npassword=pass1\n")
    cred.approve("protocol=https\nhost=example.com\nusername=user2\npassword=pass2\n")
    assert cred.fill("protocol=https\nhost=example.com\nusername=user1\n")["password"] == "pass1"
    assert cred.fill("protocol=https\nhost=example.com\nusername=user2\n")["password"] == "pass2"


def test_does_not_erase_a_password_distinct_from_input(cred):
    base = "protocol=https\nhost=example.com\nusername=user-distinct-pass\n"
    cred.approve(base + "password=pass1\n")
    cred.reject(base + "password=pass2\n")
    assert cred.fill(base)["password"] == "pass1"


def test_forget_user_remembers_other_user(cred):
    cred.approve("protocol=https\nhost=example.com\nusername=user1\npassword=pass1\n")
    cred.approve("protocol=https\nhost=example.com\nusername=user2\npassword=pass2\n")
    cred.reject("protocol=https\nhost=example.com\nusername=user1\n")
    assert cred.fill("protocol=https\nhost=example.com\nusername=user1\n")["password"] == (
        "askpass-password"
    )
    assert cred.fill("protocol=https\nhost=example.com\nusername=user2\n")["password"] == "pass2"


def test_can_store_empty_username(cred):
    cred.approve("protocol=https\nhost=sso.tld\nusername=\npassword=\n")
    out = cred.fill("protocol=https\nhost=sso.tld\n")
    assert out == {"protocol": "https", "host": "sso.tld", "username": "", "password": ""}


def test_erases_all_matching_credentials(cred):
    cred.approve("protocol=https\nhost=example.com\nusername=user-erase1\npassword=pass1\n")
    cred.approve("protocol=https\nhost=example.com\nusername=user-erase2\npassword=pass1\n")
    cred.reject("protocol=https\nhost=example.com\n")
    assert cred.fill("protocol=https\nhost=example.com\n")["password"] == "askpass-password"


def test_not_confused_by_long_header(cred):
    cred.approve("protocol=https\nhost=victim.example.com\nusername=user\npassword=to-be-stolen\n")
    long_value = "a" * (65535 - 40)
    out = cred.fill(
        f"protocol=https\nhost=badguy.example.com\nwwwauth[]=basic realm={long_value}"
        "host=victim.example.com\n"
    )
    assert out["password"] == "askpass-password"


def test_stores_and_returns_password_expiry_utc(cred):
    cred.helper(
        "store",
        "protocol=https\nhost=example.com\nusername=user-expiry\npassword=pass\n"
        "password_expiry_utc=9999999999\n",
    )
    out = cred.helper_answer("protocol=https\nhost=example.com\nusername=user-expiry\n")
    assert out == {
        "username": "user-expiry",
        "password": "pass",
        "password_expiry_utc": "9999999999",
    }


def test_overwrites_when_password_expiry_utc_changes(cred):
    base = "protocol=https\nhost=example.com\nusername=user-expiry-overwrite\n"
    cred.helper("store", base + "password=pass1\npassword_expiry_utc=9999999998\n")
    cred.helper("store", base + "password=pass2\npassword_expiry_utc=9999999999\n")
    out = cred.helper_answer(base)
    assert (out["password"], out["password_expiry_utc"]) == ("pass2", "9999999999")
    cred.helper("erase", base + "password=pass2\n")
    assert cred.helper_answer(base) == {}


def test_expired_entry_not_returned(cred):
    base = "protocol=https\nhost=example.com\nusername=old\n"
    cred.helper("store", base + "password=pass\npassword_expiry_utc=1000\n")
    assert cred.helper_answer(base) == {}
    assert cred.fill(base)["password"] == "askpass-password"


def test_stores_and_returns_oauth_refresh_token(cred):
    base = "protocol=https\nhost=example.com\nusername=user4\n"
    cred.helper("store", base + "password=pass\noauth_refresh_token=xyzzy\n")
    out = cred.helper_answer(base)
    assert (out["password"], out["oauth_refresh_token"]) == ("pass", "xyzzy")


def test_stores_authtype_and_credential(cred):
    cred.helper(
        "store",
        "capability[]=authtype\nauthtype=Bearer\ncredential=random-token\n"
        "protocol=https\nhost=git.example.com\n",
    )
    out = cred.helper("get", "capability[]=authtype\nprotocol=https\nhost=git.example.com\n")
    assert out.stdout.decode().splitlines() == [
        "capability[]=authtype",
        "authtype=Bearer",
        "credential=random-token",
    ]
    # A git without the capability must not be handed a credential it cannot use.
    assert cred.helper_answer("protocol=https\nhost=git.example.com\n") == {}


def test_does_not_store_ephemeral(cred):
    cred.helper(
        "store",
        "capability[]=authtype\nauthtype=Bearer\ncredential=git2-token\n"
        "protocol=https\nhost=git2.example.com\nephemeral=1\n",
    )
    cred.helper(
        "store",
        "protocol=https\nhost=git2.example.com\nusername=barbaz\npassword=secret\nephemeral=1\n",
    )
    assert (
        cred.helper_answer("capability[]=authtype\nprotocol=https\nhost=git2.example.com\n") == {}
    )
    assert not cred.store_file.exists() or "git2" not in cred.store_file.read_text()


def test_unknown_action_and_keys_ignored(cred):
    out = cred.helper("frobnicate", "protocol=https\nhost=example.com\n")
    assert (out.returncode, out.stdout) == (0, b"")
    cred.helper("store", "protocol=https\nhost=example.com\nusername=u\npassword=p\nfuture_key=1\n")
    assert cred.helper_answer("protocol=https\nhost=example.com\nother=x\n")["password"] == "p"


def test_explicit_default_port_is_the_same_origin(cred):
    cred.approve("protocol=https\nhost=Example.COM\nusername=u\npassword=p\n")
    assert cred.fill("protocol=https\nhost=example.com:443\n")["password"] == "p"
    assert cred.fill("protocol=https\nhost=example.com:8443\n")["password"] == "askpass-password"
