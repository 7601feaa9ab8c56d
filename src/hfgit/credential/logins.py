"""Changing the tokens ``hfgit login`` keeps: add, remove, switch. Client side only.

Each endpoint has at most one active token; logging in again under an existing name
replaces that token, so a refreshed token never sits beside its stale predecessor.
"""

from __future__ import annotations

from hfgit.credential import secretfile, store
from hfgit.credential.origin import Origin
from hfgit.credential.secretfile import Record


class LoginError(Exception):
    """A request about logins that cannot be carried out; nothing was changed."""


def add(origin: Origin, record: Record) -> None:
    """Record a login for ``origin`` and make it the endpoint's active token."""
    record = {"kind": "login", "endpoint": store.endpoint_key(origin), **record, "active": "1"}
    with secretfile.Update() as records:
        kept = []
        for r in records:
            if r["kind"] == "login" and store.login_origin(r) == origin:
                if r.get("name") == record["name"]:
                    continue
                r = {**r, "active": "0"}
            kept.append(r)
        records[:] = [*kept, record]


def remove(origin: Origin, name: str | None) -> list[str]:
    """Remove one named login (or all of the endpoint's); return the removed names."""
    with secretfile.Update() as records:
        removed = [
            r.get("name", "")
            for r in store.logins_for(records, origin)
            if name is None or r.get("name") == name
        ]
        if not removed:
            what = f"no token named {name!r}" if name else "no token"
            raise LoginError(f"{what} for {store.endpoint_key(origin)}; see `hfgit auth list`")
        records[:] = [
            r
            for r in records
            if not (
                r["kind"] == "login"
                and store.login_origin(r) == origin
                and (name is None or r.get("name") == name)
            )
        ]
    return removed


def switch(origin: Origin, name: str) -> None:
    """Make the named token the endpoint's active one."""
    with secretfile.Update() as records:
        names = [r.get("name") for r in store.logins_for(records, origin)]
        if name not in names:
            raise LoginError(
                f"no token named {name!r} for {store.endpoint_key(origin)}; see `hfgit auth list`"
            )
        records[:] = [
            {**r, "active": "1" if r.get("name") == name else "0"}
            if r["kind"] == "login" and store.login_origin(r) == origin
            else r
            for r in records
        ]
