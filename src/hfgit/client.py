"""Client commands of ``hfgit``: login, logout, auth list|switch, whoami, setup-git.

They manage the tokens ``git-credential-hf`` hands to git. Tokens are read from stdin or
a no-echo prompt, never from the command line (which ``ps`` shows), and never printed;
messages go to stderr.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from hfgit.credential import gitsetup, hfsources, logins, secretfile, select, store, whoami
from hfgit.credential.main import hub_origins
from hfgit.credential.origin import Origin, OriginError, is_loopback, parse_url
from hfgit.credential.protocol import has_control

DEFAULT_ENDPOINT = "https://huggingface.co"


class ClientError(Exception):
    """A user error; printed as ``hfgit: error: ...`` with exit status 1."""


def say(message: str) -> None:
    print(message, file=sys.stderr)


def _endpoint(args: argparse.Namespace) -> Origin:
    url = args.endpoint or os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT
    try:
        origin, path = parse_url(url)
    except OriginError as exc:
        raise ClientError(f"--endpoint: {exc}") from None
    if path:
        raise ClientError(f"--endpoint: give the server's origin only (no path): {url!r}")
    return origin


def _read_token(from_stdin: bool) -> str:
    if from_stdin:
        token = sys.stdin.readline().strip()
    elif sys.stdin.isatty():
        token = getpass.getpass("Token (input hidden): ").strip()
    else:
        raise ClientError("no terminal to prompt on; pipe the token in with --token-stdin")
    if not token:
        raise ClientError("no token given")
    if has_control(token) or " " in token:
        raise ClientError("the token contains spaces or control characters; nothing was saved")
    if token.startswith("api_org"):
        raise ClientError(
            "organization API tokens (api_org_...) are deprecated and not accepted; "
            "create a user access token instead"
        )
    return token


def _check_name(name: str, what: str) -> str:
    if not name or has_control(name) or len(name) > 200:
        raise ClientError(f"{what} must be 1-200 printable characters")
    return name


def cmd_login(args: argparse.Namespace) -> int:
    origin = _endpoint(args)
    endpoint = store.endpoint_key(origin)
    repos = []
    for repo in args.repo:
        key = select.repo_key(repo)
        if key is None or "," in key or repo.count("/") not in (1, 2):
            raise ClientError(
                f"--repo {repo!r}: expected NS/NAME, datasets/NS/NAME or spaces/NS/NAME"
            )
        repos.append(key)
    if origin[0] == "http" and not is_loopback(origin):
        say(f"warning: {endpoint} is plain http; the token will cross the network unencrypted")
    token = _read_token(args.token_stdin)
    try:
        info = whoami.fetch(endpoint, token)
    except whoami.WhoamiError as exc:
        raise ClientError(f"{exc}; nothing was saved") from None
    record = {"token": token, "repos": ",".join(repos)}
    if info is None:
        say(f"note: {endpoint} has no /api/whoami-v2; the token was not validated")
        record |= {"name": _check_name(args.name or "default", "--name"), "username": ""}
    else:
        details = whoami.access_token(info)
        name = args.name or str(details.get("displayName") or "") or f"token-{info['name']}"
        record |= {
            "name": _check_name(name, "the token name"),
            "username": info["name"],
            "role": str(details.get("role", "")),
            "scopes": whoami.scopes(info),
            "expires": whoami.expires(info),
        }
    if has_control(record["username"]) or has_control(record.get("role", "")):
        raise ClientError(f"{endpoint} sent an account name with control characters")
    if args.bearer:
        record["authtype"] = "Bearer"
    logins.add(origin, record)
    who = f" as {record['username']}" if record["username"] else ""
    role = f", role {record['role']}" if record.get("role") else ""
    say(f"Logged in to {endpoint}{who} (token {record['name']!r}{role}); now the active token.")
    if gitsetup.HELPER not in gitsetup.helpers():
        say("git does not use the helper yet: run `hfgit setup-git`.")
    say(
        f"For huggingface_hub, hf and transformers: export HF_ENDPOINT={endpoint} and "
        "HF_HUB_DISABLE_XET=1 (hfgit serves Git LFS, not Xet: uploads of large files "
        "fail without it)."
    )
    return 0


def cmd_logout(args: argparse.Namespace) -> int:
    origin = _endpoint(args)
    for name in logins.remove(origin, args.name):
        say(f"Removed token {name!r} for {store.endpoint_key(origin)}.")
    return 0


def cmd_auth_list(args: argparse.Namespace) -> int:
    records = [r for r in secretfile.read() if r["kind"] == "login"]
    if not records:
        say("No hfgit logins.")
    for r in records:
        mark = "*" if r.get("active") == "1" else " "
        details = [f"user {r['username']}" if r.get("username") else "user unknown"]
        if r.get("role"):
            details.append(f"role {r['role']}")
        if r.get("repos"):
            details.append("repos " + " ".join(r["repos"].split(",")))
        if r.get("scopes"):
            details.append(f"{len(select.parse_scopes(r['scopes']))} fine-grained scope(s)")
        print(f"{mark} {r['endpoint']}  {r.get('name', '')}  ({', '.join(details)})")
    hub = hfsources.hub_token()
    if hub is not None:
        print(f"  hub endpoints also get the token from {hub.source}")
    return 0


def cmd_auth_switch(args: argparse.Namespace) -> int:
    origin = _endpoint(args)
    logins.switch(origin, args.name)
    say(f"Active token for {store.endpoint_key(origin)}: {args.name!r}.")
    return 0


def _token_for(origin: Origin) -> tuple[str, str]:
    """The token the helper would send to this endpoint (no repo path), and its origin."""
    records = secretfile.read()
    login = select.choose(store.logins_for(records, origin), None, None)
    if login is not None:
        return login["token"], f"hfgit login {login.get('name', '')!r}"
    hub = hfsources.hub_token() if origin in hub_origins(records) else None
    if hub is None:
        raise ClientError(f"not logged in to {store.endpoint_key(origin)}: run `hfgit login`")
    return hub.token, hub.source


def cmd_whoami(args: argparse.Namespace) -> int:
    origin = _endpoint(args)
    token, source = _token_for(origin)
    try:
        info = whoami.fetch(store.endpoint_key(origin), token)
    except whoami.WhoamiError as exc:
        raise ClientError(str(exc)) from None
    if info is None:
        raise ClientError(f"{store.endpoint_key(origin)} has no /api/whoami-v2")
    print(info["name"])
    orgs = [o.get("name", "") for o in info.get("orgs") or [] if isinstance(o, dict)]
    if orgs:
        print("orgs: " + ",".join(orgs))
    details = whoami.access_token(info)
    if details:
        print(f"token: {details.get('displayName', '')} (role {details.get('role', '')})")
    say(f"(token from {source})")
    return 0


def cmd_setup_git(args: argparse.Namespace) -> int:
    endpoint = store.endpoint_key(_endpoint(args))
    scope = args.scope
    try:
        action = gitsetup.undo if args.undo else gitsetup.setup
        changed = action(endpoint, scope)
    except gitsetup.SetupError as exc:
        raise ClientError(str(exc)) from None
    verb = "removed" if args.undo else "set"
    for item in changed:
        say(f"{verb} ({scope}): {item}")
    if not changed:
        say(f"nothing to do: git ({scope}) was already {'clean' if args.undo else 'set up'}")
    order = gitsetup.helpers()
    if not args.undo and gitsetup.HELPER in order and order[0] != gitsetup.HELPER:
        first = ", ".join(order[: order.index(gitsetup.HELPER)])
        say(f"note: git asks {first} before hf; they answer first for the same hosts")
    return 0


def _run(func):
    """Turn expected errors into one clear line and exit status 1."""

    def run(args: argparse.Namespace) -> int:
        try:
            return func(args)
        except (ClientError, logins.LoginError, secretfile.StoreError) as exc:
            say(f"hfgit: error: {exc}")
            return 1

    return run


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the client commands to the ``hfgit`` command line (called by ``hfgit.cli``)."""
    endpoint_help = f"server URL (default: $HF_ENDPOINT or {DEFAULT_ENDPOINT})"

    p = subparsers.add_parser("login", help="store a user access token for git")
    p.add_argument("--endpoint", help=endpoint_help)
    p.add_argument("--name", help="name for this token (default: its name on the server)")
    p.add_argument(
        "--repo",
        action="append",
        default=[],
        metavar="NS/NAME",
        help="use this token for this repo (datasets/NS/NAME, spaces/NS/NAME); repeatable",
    )
    p.add_argument("--token-stdin", action="store_true", help="read the token from stdin")
    p.add_argument(
        "--bearer",
        action="store_true",
        help="send it as a Bearer token to git versions that can (2.46+)",
    )
    p.set_defaults(func=_run(cmd_login))

    p = subparsers.add_parser("logout", help="forget hfgit tokens for an endpoint")
    p.add_argument("--endpoint", help=endpoint_help)
    p.add_argument("--name", help="forget only this token")
    p.set_defaults(func=_run(cmd_logout))

    auth = subparsers.add_parser("auth", help="list or switch stored tokens").add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    p = auth.add_parser("list", help="list stored tokens (never their values)")
    p.set_defaults(func=_run(cmd_auth_list))
    p = auth.add_parser("switch", help="make a stored token the endpoint's active one")
    p.add_argument("name")
    p.add_argument("--endpoint", help=endpoint_help)
    p.set_defaults(func=_run(cmd_auth_switch))

    p = subparsers.add_parser("whoami", help="show who the active token belongs to")
    p.add_argument("--endpoint", help=endpoint_help)
    p.set_defaults(func=_run(cmd_whoami))

    p = subparsers.add_parser("setup-git", help="make git use git-credential-hf")
    p.add_argument("--endpoint", help=endpoint_help)
    where = p.add_mutually_exclusive_group()
    where.add_argument(
        "--global", dest="scope", action="store_const", const="global", help="~/.gitconfig"
    )
    where.add_argument(
        "--local", dest="scope", action="store_const", const="local", help="this repository"
    )
    p.set_defaults(scope="global")
    p.add_argument("--undo", action="store_true", help="remove what setup-git added")
    p.set_defaults(func=_run(cmd_setup_git))
