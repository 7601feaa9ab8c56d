"""The pkt-line protocol both services read requests with: dulwich's, without its asserts.

dulwich's ``ReceivableProtocol`` asserts that every read asks for at least one byte, so
an empty pkt-line (``0004``) became an ``AssertionError`` and a 500. git never sends
one (``gitprotocol-common``: implementations SHOULD NOT), so it is a protocol error here,
answered like any other malformed request.
"""

from __future__ import annotations

from dulwich.errors import GitProtocolError
from dulwich.protocol import ReceivableProtocol


class StrictProtocol(ReceivableProtocol):
    """``ReceivableProtocol`` where a read of nothing is nothing and ``0004`` is refused."""

    def read(self, size: int) -> bytes:
        return super().read(size) if size > 0 else b""

    def recv(self, size: int) -> bytes:
        return super().recv(size) if size > 0 else b""

    def read_pkt_line(self) -> bytes | None:
        line = super().read_pkt_line()
        if line == b"":
            raise GitProtocolError("empty pkt-line (0004)")
        return line
