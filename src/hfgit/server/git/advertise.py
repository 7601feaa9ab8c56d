"""The answer to ``GET info/refs?service=…``: the service header, then the engine's refs."""

from __future__ import annotations

from io import BytesIO

from dulwich.protocol import pkt_line

from .engines import GitSession, ServiceHandler


def advertisement(handler: ServiceHandler, session: GitSession) -> bytes:
    """The whole smart-HTTP advertisement: ``# service=<name>``, a flush, then the refs."""
    out = BytesIO()
    out.write(pkt_line(b"# service=" + session.service.encode("ascii") + b"\n"))
    out.write(pkt_line(None))
    handler.advertise(session, out.write)
    return out.getvalue()
