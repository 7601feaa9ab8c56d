"""What the secret file means: credentials git stored, and tokens ``hfgit login`` recorded.

``entry`` records behave like git's own storage helpers (t/lib-credential.sh): keyed by
origin, path and username; a second store overwrites; erase removes every match but
never an entry whose password differs from the one git sends. One deliberate extension:
an entry stored without a path answers for every path of its origin, so a token stored
for a whole host (as ``huggingface_hub`` does) still works when ``useHttpPath`` is on.

``login`` records carry a token for an endpoint plus what ``/api/whoami-v2`` said about
it (account name, role, fine-grained scopes), the repos it is pinned to, and whether it
is the endpoint's active token.
"""

from hfgit.credential.origin import Origin, make_origin, origin_url, parse_url
from hfgit.credential.protocol import Request
from hfgit.credential.secretfile import Record

ENTRY_SECRETS = ("password", "password_expiry_utc", "oauth_refresh_token", "authtype", "credential")


def entry_origin(entry: Record) -> Origin:
    return (entry["protocol"], entry["host"], int(entry["port"]))


def login_origin(login: Record) -> Origin:
    return parse_url(login["endpoint"])[0]


def request_origin(request: Request) -> Origin:
    return make_origin(request.attrs["protocol"], request.attrs["host"])


def is_expired(expiry: str | None, now: float) -> bool:
    """An expiry that is not a number is treated as expired: never release a doubtful secret."""
    if not expiry:
        return False
    return not expiry.isdigit() or int(expiry) <= now


def _entry_matches(entry: Record, origin: Origin, request: Request) -> bool:
    if entry["kind"] != "entry" or entry_origin(entry) != origin:
        return False
    path = request.get("path")
    if path is not None and "path" in entry and entry["path"] != path:
        return False
    username = request.get("username")
    return username is None or entry.get("username") == username


def find_entry(
    records: list[Record], origin: Origin, request: Request, now: float
) -> Record | None:
    """The stored entry git should get, preferring one stored for exactly this path."""
    bearer_ok = request.capable("authtype")
    found = None
    for entry in records:
        if not _entry_matches(entry, origin, request):
            continue
        if is_expired(entry.get("password_expiry_utc"), now):
            continue
        if "password" not in entry and not (bearer_ok and "credential" in entry):
            continue
        if entry.get("path") == request.get("path"):
            return entry
        found = found or entry
    return found


def put_entry(records: list[Record], origin: Origin, request: Request) -> None:
    """Store (or overwrite) the credential git approved."""
    entry: Record = {
        "kind": "entry",
        "protocol": origin[0],
        "host": origin[1],
        "port": str(origin[2]),
    }
    for key in ("path", "username"):
        if request.get(key) is not None:
            entry[key] = request.attrs[key]
    for key in ENTRY_SECRETS:
        if request.get(key) is not None:
            entry[key] = request.attrs[key]
    records[:] = [
        r
        for r in records
        if not (
            r["kind"] == "entry"
            and entry_origin(r) == origin
            and r.get("path") == entry.get("path")
            and r.get("username") == entry.get("username")
        )
    ]
    records.append(entry)


def erase_entries(records: list[Record], origin: Origin, request: Request) -> int:
    """Remove every entry matching the request; a password or credential, if sent, must match."""
    password = request.get("password")
    credential = request.get("credential")
    kept = []
    for r in records:
        if (
            _entry_matches(r, origin, request)
            and (password is None or r.get("password") == password)
            and (credential is None or r.get("credential") == credential)
        ):
            continue
        kept.append(r)
    removed = len(records) - len(kept)
    records[:] = kept
    return removed


def logins_for(records: list[Record], origin: Origin) -> list[Record]:
    """The tokens ``hfgit login`` recorded for exactly this origin."""
    return [r for r in records if r["kind"] == "login" and login_origin(r) == origin]


def endpoint_key(origin: Origin) -> str:
    """How a login record names its endpoint: the canonical origin URL."""
    return origin_url(origin)
