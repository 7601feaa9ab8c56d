"""``git-credential-hf get|store|erase``: the program git runs as ``credential.helper = hf``.

Answers come from, in order: tokens recorded by ``hfgit login`` for the request's exact
origin, credentials git stored with us, and (for hub endpoints only) the token
``huggingface_hub`` would use. Everything on the ``get`` path is standard library and
cheap, because git starts the helper several times per operation.
"""

import sys
import time

from hfgit.credential import hfsources, secretfile, select, store
from hfgit.credential.origin import Origin, OriginError
from hfgit.credential.protocol import ProtocolError, Request, format_response, read
from hfgit.credential.secretfile import Record, StoreError

DEFAULT_USERNAME = "hf_user"  # what huggingface_hub uses; the Hub ignores the username


def warn(message: str) -> None:
    """Tell the user something on stderr (git shows it); never pass a secret here."""
    sys.stderr.write(f"git-credential-hf: {message}\n")


def hub_origins(records: list[Record]) -> set[Origin]:
    """Endpoints that may receive ``huggingface_hub`` tokens.

    Only https defaults and URLs the user wrote in full (``HF_ENDPOINT``, ``hfgit login
    --endpoint``) are here, so plain http is always an explicit choice, and a request for
    any other host, port or protocol never sees these tokens.
    """
    origins = hfsources.endpoint_origins()
    for record in records:
        if record["kind"] == "login":
            try:
                origins.add(store.login_origin(record))
            except OriginError:
                continue
    return origins


def answer_login(request: Request, login: Record) -> list[tuple[str, str]]:
    """Basic (username + token as password), or Bearer when the user chose it and git can.

    For Bearer, ``capability[]=authtype`` must come first (git-credential(1)); a git that
    did not announce the capability gets Basic, which every hfgit server accepts.
    """
    if login.get("authtype") == "Bearer" and request.capable("authtype"):
        fields = [
            ("capability[]", "authtype"),
            ("authtype", "Bearer"),
            ("credential", login["token"]),
        ]
    else:
        username = request.get("username") or login.get("username") or DEFAULT_USERNAME
        fields = [("username", username), ("password", login["token"])]
    if login.get("expires"):
        fields.append(("password_expiry_utc", login["expires"]))
    return fields


def answer_entry(request: Request, entry: Record) -> list[tuple[str, str]]:
    fields = []
    if "credential" in entry and request.capable("authtype"):
        fields += [("capability[]", "authtype"), ("authtype", entry.get("authtype", "Bearer"))]
        fields.append(("credential", entry["credential"]))
    if "username" in entry:
        fields.append(("username", entry["username"]))
    if "password" in entry:
        fields.append(("password", entry["password"]))
    for key in ("password_expiry_utc", "oauth_refresh_token"):
        if key in entry:
            fields.append((key, entry[key]))
    return fields


def get(request: Request) -> list[tuple[str, str]]:
    origin = store.request_origin(request)
    now = time.time()
    try:
        records = secretfile.read()
    except StoreError as exc:
        warn(f"{exc}; answering from huggingface_hub sources only")
        records = []
    login = select.choose(
        store.logins_for(records, origin), request.get("path"), request.get("username")
    )
    if login is not None and not store.is_expired(login.get("expires"), now):
        return answer_login(request, login)
    entry = store.find_entry(records, origin, request, now)
    if entry is not None:
        return answer_entry(request, entry)
    if origin in hub_origins(records):
        hub = hfsources.hub_token()
        if hub is not None and not store.is_expired(hub.expires, now):
            fields = [
                ("username", request.get("username") or DEFAULT_USERNAME),
                ("password", hub.token),
            ]
            if hub.expires:
                fields.append(("password_expiry_utc", hub.expires))
            return fields
    return []


def _source_token(origin: Origin, records: list[Record]) -> hfsources.HubToken | None:
    return hfsources.hub_token() if origin in hub_origins(records) else None


def store_action(request: Request) -> None:
    """Keep what git approved, unless it is ephemeral or a copy of a token we can produce.

    Copies are skipped so that rotating a token at its source (``hfgit login``, ``HF_TOKEN``,
    ``hf auth login``) takes effect at once instead of racing a stale copy.
    """
    if request.is_true("ephemeral"):
        return
    secret = request.get("password")
    if secret is None:
        secret = request.get("credential") if request.get("authtype") else None
        if secret is None:
            return
    elif request.get("username") is None:
        return
    origin = store.request_origin(request)
    with secretfile.Update() as records:
        source = _source_token(origin, records)
        if source is not None and source.token == secret:
            return
        if any(r["token"] == secret for r in store.logins_for(records, origin)):
            return
        store.put_entry(records, origin, request)


def erase_action(request: Request) -> None:
    """Forget what git says failed; explain, without deleting, a rejected external token."""
    origin = store.request_origin(request)
    secret = request.get("password") or request.get("credential")
    records = secretfile.read()
    probe = list(records)
    touched = store.erase_entries(probe, origin, request) > 0
    rejected = [r for r in store.logins_for(records, origin) if secret and r["token"] == secret]
    if touched or rejected:
        with secretfile.Update() as records:
            store.erase_entries(records, origin, request)
            records[:] = [
                r
                for r in records
                if not (
                    r["kind"] == "login"
                    and r["token"] == secret
                    and store.login_origin(r) == origin
                )
            ]
        for login in rejected:
            warn(
                f"removed the token {login.get('name', '')!r} for {login['endpoint']}: the server "
                "rejected it. Run `hfgit login` with a new token."
            )
        return
    if secret:
        source = _source_token(origin, records)
        if source is not None and source.token == secret:
            warn(
                f"{request.attrs['host']} rejected the token from {source.source}; it was not "
                "deleted. Replace it (`hf auth login`, or set the variable) or remove it."
            )


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``git-credential-hf``; git passes the action as the last argument."""
    args = sys.argv[1:] if argv is None else argv
    if not args:
        warn("usage: git-credential-hf get|store|erase (git runs this for you)")
        return 2
    action = args[-1]
    if action not in ("get", "store", "erase"):
        return 0  # git-credential(1): unknown actions are ignored
    try:
        request = read(sys.stdin.buffer)
        if action == "get":
            sys.stdout.buffer.write(format_response(get(request)))
            sys.stdout.buffer.flush()
        elif action == "store":
            store_action(request)
        else:
            erase_action(request)
    except (ProtocolError, OriginError, StoreError) as exc:
        warn(str(exc))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
