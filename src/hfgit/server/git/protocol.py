"""The pkt-line protocol both services speak: dulwich's, without its asserts or copies.

dulwich's ``ReceivableProtocol`` asserts that every read asks for at least one byte, so
an empty pkt-line (``0004``) became an ``AssertionError`` and a 500. git never sends
one (``gitprotocol-common``: implementations SHOULD NOT), so it is a protocol error here,
answered like any other malformed request. Its side-band writes slice the remaining
``bytes`` for every packet, copying the rest of the blob each time: quadratic in the size
of one write; here each byte is copied once.
"""

from __future__ import annotations

from dulwich.errors import GitProtocolError
from dulwich.protocol import ReceivableProtocol

#: What one side-band-64k packet carries: 65520 bytes less the length and the channel.
SIDEBAND_PAYLOAD = 65515


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

    def write_sideband(self, channel: int, blob: bytes) -> None:
        view = memoryview(blob)
        prefix = bytes([channel])
        for start in range(0, len(view), SIDEBAND_PAYLOAD):
            self.write_pkt_line(prefix + view[start : start + SIDEBAND_PAYLOAD])
