"""Where a secret may go: exact origins (protocol, host, port), never look-alikes.

A token must reach only the host it belongs to. Comparing origins as normalized triples
(lowercased, IDNA-encoded host, explicit port) makes ``huggingface.co.evil.example``,
``evilhuggingface.co`` and ``huggingface.co:8443`` plainly different from
``huggingface.co``, with no suffix or substring rule anywhere.
"""

DEFAULT_PORTS = {"https": 443, "http": 80}

Origin = tuple[str, str, int]  # (protocol, host, port), all normalized


class OriginError(ValueError):
    """A host or URL that cannot be compared safely."""


def normalize_hostname(hostname: str) -> str:
    """Lowercase and IDNA-encode a host name; keep IP literals as they are."""
    hostname = hostname.lower()
    if not hostname:
        raise OriginError("empty host name")
    if not hostname.isascii():
        try:
            hostname = hostname.encode("idna").decode("ascii")
        except UnicodeError:
            raise OriginError(f"host name {hostname!r} is not valid IDNA") from None
    for c in hostname:
        if not (c.isalnum() or c in "-._[]:"):
            raise OriginError(f"host name {hostname!r} contains {c!r}")
    return hostname


def make_origin(protocol: str, host: str) -> Origin:
    """Normalize git's ``protocol`` and ``host`` (which includes ``:port`` when the URL had one)."""
    protocol = protocol.lower()
    port_text = ""
    if host.startswith("["):  # IPv6 literal, maybe with a port
        end = host.find("]")
        if end < 0:
            raise OriginError(f"unterminated IPv6 literal in {host!r}")
        hostname, rest = host[: end + 1], host[end + 1 :]
        if rest:
            if not rest.startswith(":"):
                raise OriginError(f"unexpected text after IPv6 literal in {host!r}")
            port_text = rest[1:]
    else:
        hostname, _, port_text = host.partition(":")
    port = DEFAULT_PORTS.get(protocol, 0)
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise OriginError(f"invalid port in {host!r}")
        port = int(port_text)
    return (protocol, normalize_hostname(hostname), port)


def parse_url(url: str) -> tuple[Origin, str]:
    """Split an endpoint URL into its origin and path (without leading or trailing ``/``).

    Only ``https://`` and ``http://`` URLs are endpoints; a URL without a scheme is refused
    so that plain http is always something the user wrote explicitly.
    """
    scheme, sep, rest = url.partition("://")
    scheme = scheme.lower()
    if not sep or scheme not in DEFAULT_PORTS:
        raise OriginError(f"{url!r} is not an https:// or http:// URL")
    authority, _, path = rest.partition("/")
    if "@" in authority:
        raise OriginError("endpoint URLs must not contain a user name or password")
    if not authority:
        raise OriginError(f"{url!r} has no host")
    path = path.partition("?")[0].partition("#")[0].strip("/")
    return make_origin(scheme, authority), path


def origin_url(origin: Origin) -> str:
    """The canonical URL of an origin, without the port when it is the default one."""
    protocol, host, port = origin
    if DEFAULT_PORTS.get(protocol) == port:
        return f"{protocol}://{host}"
    return f"{protocol}://{host}:{port}"


def is_loopback(origin: Origin) -> bool:
    """Tell whether the host is a loopback IP literal (names are not trusted to resolve so)."""
    host = origin[1]
    if host == "[::1]":
        return True
    parts = host.split(".")
    return (
        len(parts) == 4 and parts[0] == "127" and all(p.isdigit() and int(p) < 256 for p in parts)
    )
