"""Reading and writing git's credential protocol (git-credential(1)).

The parser is strict on purpose. Git and its helpers have had several vulnerabilities
where a value smuggled a line break or a control character into the protocol and made a
helper answer for another host (CVE-2020-5260, CVE-2020-11008, CVE-2024-52006, and
GCM's CVE-2024-50338). We therefore split only on ``\\n``, refuse a whole request when any
value carries a control character, and refuse requests without ``protocol`` or ``host``.
"""

import io

MAX_LINE = 65535  # git's own limit; a longer line is an attack or a bug, never data


class ProtocolError(ValueError):
    """The request cannot be trusted; the helper answers nothing."""


class Request:
    """One credential description: single-valued attributes and ``key[]`` lists."""

    __slots__ = ("attrs", "lists")

    def __init__(self, attrs: dict[str, str], lists: dict[str, list[str]]) -> None:
        self.attrs = attrs
        self.lists = lists

    def get(self, key: str) -> str | None:
        return self.attrs.get(key)

    def capable(self, capability: str) -> bool:
        """Tell whether git announced ``capability[]=<capability>`` (git 2.46+)."""
        return capability in self.lists.get("capability", ())

    def is_true(self, key: str) -> bool:
        """Interpret a boolean attribute the way git does for ``ephemeral`` and ``quit``."""
        return (self.attrs.get(key) or "").lower() in ("1", "true", "yes", "on")


def has_control(value: str) -> bool:
    """Tell whether ``value`` contains a C0 control character or DEL (NUL, CR, LF, TAB, ...)."""
    return any(ord(c) < 0x20 or ord(c) == 0x7F for c in value)


def parse(data: bytes) -> Request:
    """Parse a request up to the first blank line or the end of the input.

    Raises ProtocolError for anything git itself would never send.
    """
    attrs: dict[str, str] = {}
    lists: dict[str, list[str]] = {}
    for raw in data.split(b"\n"):
        if not raw:
            break
        if len(raw) > MAX_LINE:
            raise ProtocolError(f"a line of the request is longer than {MAX_LINE} bytes")
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("the request is not valid UTF-8") from None
        key, sep, value = line.partition("=")
        if not sep or not key:
            raise ProtocolError("a line of the request is not key=value")
        if has_control(key) or has_control(value):
            name = key if not has_control(key) else "a key"
            raise ProtocolError(f"the value of {name!r} contains a control character")
        if key.endswith("[]"):
            name = key[:-2]
            if value:
                lists.setdefault(name, []).append(value)
            else:
                lists[name] = []  # git: an empty ``key[]=`` clears the list
        else:
            attrs[key] = value
    if not attrs.get("protocol") or not attrs.get("host"):
        raise ProtocolError("the request has no protocol or no host; nothing to answer")
    return Request(attrs, lists)


def read(stream: io.BufferedIOBase) -> Request:
    """Read lines up to a blank line or EOF (so an interactive user can end with Enter)."""
    lines = []
    while True:
        line = stream.readline(MAX_LINE + 2)
        if len(line) > MAX_LINE + 1 or (len(line) == MAX_LINE + 1 and not line.endswith(b"\n")):
            raise ProtocolError(f"a line of the request is longer than {MAX_LINE} bytes")
        if line in (b"", b"\n"):
            break
        lines.append(line if line.endswith(b"\n") else line + b"\n")
    return parse(b"".join(lines))


def format_response(fields: list[tuple[str, str]]) -> bytes:
    """Serialize an answer, refusing to emit any value that could break the protocol."""
    out = []
    for key, value in fields:
        if has_control(key) or has_control(value) or "=" in key:
            raise ProtocolError(f"refusing to emit a malformed {key!r} value")
        out.append(f"{key}={value}\n")
    return "".join(out).encode("utf-8")
