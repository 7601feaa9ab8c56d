"""Tokens that ``huggingface_hub`` users already have: ``HF_TOKEN`` and the hub's token files.

Read exactly as ``huggingface_hub`` (>= 1.0) reads them: ``HF_TOKEN``, then
``HUGGING_FACE_HUB_TOKEN``, then ``$HF_TOKEN_PATH`` (default ``$HF_HOME/token``, with
``$HF_HOME`` defaulting to ``$XDG_CACHE_HOME/huggingface`` then ``~/.cache/huggingface``),
stripped of whitespace. ``stored_tokens`` beside it (INI: section = token name, key
``hf_token``, OAuth logins add ``expires_at``) tells us the active token's name, for
messages, and its expiry, for ``password_expiry_utc``. Like ``huggingface_hub``, we do not
fall back to a stored token that is not the active one.

These tokens go only to hub endpoints: huggingface.co, hf.co, the ``HF_ENDPOINT`` host,
and endpoints the user logged in to with ``hfgit login``.
"""

import os

from hfgit.credential.origin import Origin, OriginError, parse_url
from hfgit.credential.protocol import has_control

DEFAULT_ENDPOINTS = ("https://huggingface.co", "https://hf.co")


class HubToken:
    """A token with where it came from (for messages) and its expiry, if known."""

    __slots__ = ("expires", "source", "token")

    def __init__(self, token: str, source: str, expires: str | None = None) -> None:
        self.token = token
        self.source = source
        self.expires = expires


def endpoint_origins() -> set[Origin]:
    """The built-in hub endpoints plus ``HF_ENDPOINT`` (an invalid value is ignored)."""
    urls = list(DEFAULT_ENDPOINTS)
    if os.environ.get("HF_ENDPOINT"):
        urls.append(os.environ["HF_ENDPOINT"])
    origins = set()
    for url in urls:
        try:
            origins.add(parse_url(url)[0])
        except OriginError:
            continue
    return origins


def _clean(token: str | None) -> str | None:
    """huggingface_hub's ``_clean_token``: drop CR/LF, strip, empty means absent."""
    if token is None:
        return None
    token = token.replace("\r", "").replace("\n", "").strip()
    if not token or has_control(token) or " " in token:
        return None
    return token


def hf_home() -> str:
    home = os.environ.get("HF_HOME")
    if not home:
        cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        home = os.path.join(cache, "huggingface")
    return os.path.expandvars(os.path.expanduser(home))


def token_path() -> str:
    explicit = os.environ.get("HF_TOKEN_PATH")
    if explicit:
        return os.path.expandvars(os.path.expanduser(explicit))
    return os.path.join(hf_home(), "token")


def stored_tokens_path() -> str:
    return os.path.join(os.path.dirname(token_path()), "stored_tokens")


def read_stored_tokens(path: str) -> dict[str, dict[str, str]]:
    """Parse the INI file ``configparser`` writes (``[name]`` then ``key = value`` lines).

    A hand parser, because ``configparser`` imports ``re`` and costs more than the helper.
    Keys are lowercased as ``configparser`` does; unreadable files count as empty.
    """
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError):
        return {}
    sections: dict[str, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for raw in text.split("\n"):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
        elif current is not None:
            key, sep, value = line.partition("=")
            if sep:
                current[key.strip().lower()] = value.strip()
    return sections


def _file_token() -> HubToken | None:
    path = token_path()
    try:
        with open(path, encoding="utf-8") as f:
            token = _clean(f.read())
    except (OSError, UnicodeDecodeError):
        return None
    if token is None:
        return None
    for name, fields in read_stored_tokens(stored_tokens_path()).items():
        if fields.get("hf_token") == token:
            return HubToken(
                token,
                f"the huggingface_hub token file {path} (token {name!r})",
                fields.get("expires_at"),
            )
    return HubToken(token, f"the huggingface_hub token file {path}")


def hub_token() -> HubToken | None:
    """The token ``huggingface_hub`` would use, in its own order of precedence.

    A variable holding only whitespace counts as unset (as in ``huggingface_hub``); one
    holding a control character is refused rather than passed on to git.
    """
    variable = "HF_TOKEN" if os.environ.get("HF_TOKEN") else "HUGGING_FACE_HUB_TOKEN"
    value = os.environ.get(variable)
    if value and value.strip():
        token = _clean(value)
        return HubToken(token, f"the environment variable {variable}") if token else None
    return _file_token()
