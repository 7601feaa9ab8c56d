"""Who a client is, and how much of one worker process each client may hold at once."""

from __future__ import annotations

from collections import Counter


def forwarded_client(x_forwarded_for: str | None, peer: str) -> str:
    """The client as werkzeug's ``ProxyFix(x_for=1)`` reads it: the last address in
    ``X-Forwarded-For`` (the one the trusted proxy added), else the socket's peer."""
    if x_forwarded_for:
        return x_forwarded_for.split(",")[-1].strip()
    return peer


class ClientCaps:
    """Counts open connections per peer address and requests in service per client.

    Only the worker's event loop touches the counters, so no lock is needed.
    """

    def __init__(self, max_connections: int, max_requests: int) -> None:
        self.max_connections = max_connections
        self.max_requests = max_requests
        self._connections: Counter[str] = Counter()
        self._requests: Counter[str] = Counter()

    def open_connection(self, peer: str) -> bool:
        """Count a new connection from ``peer``; False (not counted) past the cap."""
        if self._connections[peer] >= self.max_connections:
            return False
        self._connections[peer] += 1
        return True

    def close_connection(self, peer: str) -> None:
        _decrement(self._connections, peer)

    def start_request(self, client: str) -> bool:
        """Count a request about to be served for ``client``; False past the cap."""
        if self._requests[client] >= self.max_requests:
            return False
        self._requests[client] += 1
        return True

    def end_request(self, client: str) -> None:
        _decrement(self._requests, client)


def _decrement(counter: Counter[str], key: str) -> None:
    counter[key] -= 1
    if counter[key] <= 0:
        del counter[key]
