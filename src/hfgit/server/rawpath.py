"""Percent-encoded revisions and file paths of the Hub's file API, and nowhere else.

``huggingface_hub`` quotes revisions with ``safe=""`` (``feat%2Fx``) and file names with
``/`` kept (``sub/a%20b.txt``). Under PEP 3333 ``PATH_INFO`` is already decoded, so the
routes split the raw URI instead (``RAW_URI`` under gunicorn, ``REQUEST_URI`` under
waitress and werkzeug). The repository part must still be canonical and unencoded,
checked by :func:`hfgit.names.is_canonical`; only the tail after a file-API keyword
(``resolve``, ``tree``, …) may carry escapes, and each of its segments is decoded here,
one by one, refusing what could name another path: ``.``, ``..``, empty segments, NUL,
control characters, backslashes and (in file paths) an encoded ``/``.
"""

from __future__ import annotations

import re
from urllib.parse import unquote_to_bytes

from .refusal import Refusal

#: Where the tail begins: after the repository and the keyword that starts the file API.
_TAIL_START = re.compile(
    r"/(?:(?:datasets|spaces)/)?[^/%]+/[^/%]+/resolve/"
    r"|/api/(?:models|datasets|spaces)/[^/%]+/[^/%]+/"
    r"(?:revision|tree|paths-info|commit|commits|preupload|branch|tag|xet-write-token|xet-read-token)/"
)


def raw_path(environ: dict) -> str:
    """The request's path as the client sent it, without the query."""
    raw = environ.get("RAW_URI") or environ.get("REQUEST_URI") or environ.get("PATH_INFO") or "/"
    return raw.split("?", 1)[0]


def tail_start(raw: str) -> int | None:
    """Where the file API's encoded tail starts in ``raw``, or None for any other path."""
    match = _TAIL_START.match(raw)
    return match.end() if match else None


def _bad(what: str, raw: str) -> Refusal:
    return Refusal(400, f"Invalid {what} in the URL: {raw[:200]!r}.")


def _decode(segment: str, what: str) -> str:
    try:
        text = unquote_to_bytes(segment).decode("utf-8")
    except UnicodeDecodeError:
        raise _bad(what, segment) from None
    if any(ord(char) < 0x20 or char in "\\\x7f" for char in text):
        raise _bad(what, segment)
    return text


def _check_parts(text: str, what: str, raw: str) -> str:
    if any(part in ("", ".", "..") for part in text.split("/")):
        raise _bad(what, raw)
    return text


def revision(segment: str) -> str:
    """One revision segment (``main``, ``feat%2Fx``, ``refs%2Fpr%2F1``, a commit id)."""
    return _check_parts(_decode(segment, "revision"), "revision", segment)


def file_path(raw: str) -> str:
    """A file path as ``/resolve/`` gets it: segments decoded one by one, no encoded ``/``."""
    parts = []
    for segment in raw.split("/"):
        text = _decode(segment, "file path")
        if "/" in text or text in ("", ".", ".."):
            raise _bad("file path", raw)
        parts.append(text)
    return "/".join(parts)


def tree_path(raw: str) -> str:
    """A folder path as ``tree/{rev}/`` gets it: quoted whole (``sub%2Fdir``) or not."""
    text = "/".join(_decode(segment, "path") for segment in raw.split("/"))
    return _check_parts(text.strip("/"), "path", raw) if text.strip("/") else ""
