"""dulwich's upload-pack, for the ``dulwich`` engine, behind the same fetch rules as git's.

The request was checked whole by :mod:`.wants` and :mod:`.reach` before this handler
reads it. What is left here is what dulwich gets wrong or slow on its own:

- it refuses a want that is not a current tip, although it may be reachable from one
  (a tip that moved between the advertisement and the POST): the wants the rules
  allowed are shown to dulwich as refs;
- it advertises ``filter`` and then cannot serve a partial clone's lazy fetches, and
  with ``no-done`` it sends the pack in answer to a negotiation round the client had
  not finished (stateless HTTP, ``multi_ack_detailed``): neither is advertised;
- it decodes a ``.bitmap`` into Python sets on every request and uses it only for
  haves: reachability is walked instead;
- it copies quadratically when it cuts a pack into side-band packets.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from dulwich.object_store import GraphTraversalReachability
from dulwich.protocol import CAPABILITY_FILTER, CAPABILITY_NO_DONE
from dulwich.repo import Repo
from dulwich.server import UploadPackHandler

_NOT_ADVERTISED = frozenset({CAPABILITY_FILTER, CAPABILITY_NO_DONE})


class _AllowedWants:
    """The repository, as the handler sees it: the wants the rules allowed count as refs.

    dulwich checks wants against the refs it is given when it reads them; every want
    was already checked (tip, or reachable from one) before this handler ran.
    """

    def __init__(self, repo: Repo, allowed: Iterable[bytes]) -> None:
        self._repo = repo
        self._extra = {b"refs/hfgit-allowed/" + sha: sha for sha in allowed}

    def __getattr__(self, name: str):
        return getattr(self._repo, name)

    def find_missing_objects(self, determine_wants: Callable, *args, **kwargs):
        def with_allowed(refs: Mapping[bytes, bytes], depth: int | None = None):
            return determine_wants({**refs, **self._extra}, depth)

        return self._repo.find_missing_objects(with_allowed, *args, **kwargs)


class HardenedUploadPackHandler(UploadPackHandler):
    """dulwich's upload-pack without the capabilities it cannot serve, and the slow paths."""

    def __init__(self, *args, allowed: Iterable[bytes] = (), **kwargs) -> None:
        super().__init__(*args, **kwargs)
        store = self.repo.object_store
        store.get_reachability_provider = lambda prefer_bitmaps=True: GraphTraversalReachability(
            store
        )
        self.repo = _AllowedWants(self.repo, allowed)

    def capabilities(self) -> list[bytes]:
        return [cap for cap in super().capabilities() if cap not in _NOT_ADVERTISED]

    def set_client_capabilities(self, caps: Iterable[bytes]) -> None:
        # git 2.39 asks for ``filter`` even when it was not advertised, then sends no
        # ``filter <spec>`` line (the fetch rules refuse one): nothing to filter.
        super().set_client_capabilities([cap for cap in caps if cap != CAPABILITY_FILTER])
