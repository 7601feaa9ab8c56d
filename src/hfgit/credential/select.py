"""Which of several tokens for one endpoint answers for a given repository.

The Hub recommends one token per application, often fine-grained and limited to a few
repos. With ``credential.useHttpPath`` git tells the helper the repo path, so we can pick
the token pinned to that repo (``hfgit login --repo``), else one whose fine-grained scopes
(recorded from ``/api/whoami-v2`` at login) cover it, else the endpoint's active token.
Git does not say whether it will fetch or push, so among scoped tokens one with
``repo.write`` wins over a read-only one.
"""

from hfgit.credential.secretfile import Record

_TYPE_PREFIXES = {"datasets": "dataset", "spaces": "space"}
WRITE = "repo.write"
READ = "repo.content.read"


def repo_key(path: str) -> str | None:
    """``[datasets/|spaces/]ns/name[.git][/info/lfs...]`` -> ``type/ns/name`` (lowercased)."""
    segments = [s for s in path.split("/") if s]
    if not segments:
        return None
    repo_type = _TYPE_PREFIXES.get(segments[0], "model")
    if repo_type != "model":
        segments = segments[1:]
    if len(segments) < 2:
        return None
    namespace, name = segments[0], segments[1]
    if name.endswith(".git"):
        name = name[:-4]
    if not namespace or not name:
        return None
    return f"{repo_type}/{namespace}/{name}".lower()


def parse_scopes(text: str) -> list[tuple[str, str, set[str]]]:
    """Decode ``type:name:perm+perm,...`` as written by ``format_scopes``."""
    scopes = []
    for item in text.split(","):
        parts = item.split(":")
        if len(parts) == 3:
            scopes.append((parts[0], parts[1].lower(), set(parts[2].split("+"))))
    return scopes


def format_scopes(scopes: list[tuple[str, str, list[str]]]) -> str:
    """Encode fine-grained scopes compactly; entries with unexpected characters are dropped."""
    items = []
    for entity_type, name, permissions in scopes:
        perms = "+".join(p for p in permissions if p and not set(p) & set(":,+\t"))
        if perms and not set(entity_type + name) & set(":,+\t") and entity_type and name:
            items.append(f"{entity_type}:{name}:{perms}")
    return ",".join(items)


def scope_rank(login: Record, key: str) -> int:
    """0: scopes do not cover the repo; 1: they allow reading it; 2: they allow pushing."""
    repo_type, namespace, name = key.split("/", 2)
    best = 0
    for entity_type, entity, perms in parse_scopes(login.get("scopes", "")):
        covers = (entity_type in ("user", "org") and entity == namespace) or (
            entity_type == repo_type and entity == f"{namespace}/{name}"
        )
        if covers:
            best = max(best, 2 if WRITE in perms else 1 if READ in perms else 0)
    return best


def username_fits(login: Record, username: str | None) -> bool:
    """A username in the URL selects that account's tokens; ``hf_user`` is the Hub's wildcard."""
    if username is None or username.lower() == "hf_user":
        return True
    return login.get("username", "").lower() == username.lower()


def choose(logins: list[Record], path: str | None, username: str | None) -> Record | None:
    """Pick the login that should answer, or None."""
    candidates = [r for r in logins if username_fits(r, username)]
    key = repo_key(path) if path else None
    if key:
        for login in candidates:
            if key in login.get("repos", "").split(","):
                return login
        ranked = [(scope_rank(r, key), r) for r in candidates]
        best = max((rank for rank, _ in ranked), default=0)
        if best:
            return next(r for rank, r in ranked if rank == best)
    for login in candidates:
        if login.get("active") == "1":
            return login
    return candidates[0] if len(candidates) == 1 else None
