"""The lookups of every request: who a token is, and the repository it asks for.

Each reads the database: revoking, refreshing or expiring a token, disabling its owner
or changing their memberships takes effect on the next request in every process.
"""

from __future__ import annotations

import time
from collections.abc import Iterable

import sqlalchemy as sa

from .. import policy
from .. import tokens as token_format
from ..leaks import LiveToken, candidate_tokens
from ..names import RepoId
from ..store import Store, accounts, memberships
from ..store import tokens as token_table
from .audit import AuditLog
from .errors import AuthError
from .queries import GRANT_STATUS, find_repo, token_record
from .records import Actor, Caller, RepoRecord

#: How often "last used" is written for a busy token; every request would make each
#: git fetch a database write.
LAST_USED_RESOLUTION = 60.0

# Built once, like the shared queries in .queries: they run on every request.
# The owner's ``disabled_at`` comes with the token: disabling a user costs no query.
_TOKEN_WITH_OWNER = sa.select(
    token_table,
    accounts.c.name.label("owner_name"),
    accounts.c.disabled_at.label("owner_disabled_at"),
).join(accounts, accounts.c.id == token_table.c.owner_id)
_TOKEN_BY_DIGEST = _TOKEN_WITH_OWNER.where(token_table.c.digest == sa.bindparam("digest"))
_TOKEN_BY_ID = _TOKEN_WITH_OWNER.where(token_table.c.id == sa.bindparam("token_id"))
_TOKENS_BY_DIGESTS = sa.select(
    token_table.c.id,
    token_table.c.digest,
    token_table.c.display_name,
    token_table.c.expires_at,
    accounts.c.name.label("owner_name"),
).join(accounts, accounts.c.id == token_table.c.owner_id)
#: Digests per query when looking up the candidates of one push.
_DIGESTS_PER_QUERY = 500
_ORG_ROLES = (
    sa.select(accounts.c.name_lower, memberships.c.role)
    .join(accounts, accounts.c.id == memberships.c.org_id)
    .where(memberships.c.user_id == sa.bindparam("user_id"))
)


class Lookups:
    def __init__(self, store: Store, token_key: bytes | None, audit: AuditLog) -> None:
        self.store = store
        self.token_key = token_key
        self.audit = audit

    def authenticate(self, secret: str) -> Caller:
        """Resolve a token to its caller, or raise :class:`AuthError`.

        The shape and checksum are checked before the database: typos and passwords
        cost no query.
        """
        if token_format.is_org_token(secret):
            raise AuthError("org_token")
        if not token_format.looks_like_token(secret):
            raise AuthError("password")
        if not token_format.is_well_formed(secret):
            raise AuthError("invalid")
        digest = token_format.digest(secret, self.token_key)
        return self._token_caller(_TOKEN_BY_DIGEST, {"digest": digest})

    def live_tokens(self, candidates: Iterable[str]) -> dict[str, LiveToken]:
        """Which of ``candidates`` are current tokens (not deleted, refreshed or expired).

        For content scanned for leaked tokens: one query per few hundred candidates,
        however many blobs they came from. Nothing is recorded: finding a token in a
        file is not a use of it.
        """
        by_digest = {
            token_format.digest(candidate, self.token_key): candidate
            for candidate in candidates
            if token_format.is_well_formed(candidate)
        }
        digests = list(by_digest)
        live: dict[str, LiveToken] = {}
        now = time.time()
        with self.store.begin() as conn:
            for start in range(0, len(digests), _DIGESTS_PER_QUERY):
                batch = digests[start : start + _DIGESTS_PER_QUERY]
                query = _TOKENS_BY_DIGESTS.where(token_table.c.digest.in_(batch))
                for row in conn.execute(query):
                    if row.expires_at is None or row.expires_at > now:
                        token = LiveToken(row.id, row.owner_name, row.display_name)
                        live[by_digest[row.digest]] = token
        return live

    def find_live_tokens(self, data: bytes) -> list[LiveToken]:
        """The live tokens of this server in ``data`` (a file's content), for any writer
        that takes content from users (a push, an API commit) to refuse it."""
        return list(self.live_tokens(candidate_tokens([data])).values())

    def caller_for_token(self, token_id: int) -> Caller:
        """The caller a token id stands for now; :class:`AuthError` once it is deleted or
        expired. For credentials issued earlier under a token (signed LFS URLs)."""
        return self._token_caller(_TOKEN_BY_ID, {"token_id": token_id})

    def _token_caller(self, query: sa.Select, params: dict) -> Caller:
        now = time.time()
        with self.store.begin() as conn:
            row = conn.execute(query, params).first()
            if row is None or (row.expires_at is not None and row.expires_at <= now):
                raise AuthError("invalid")
            if row.owner_disabled_at is not None:
                raise AuthError("disabled")
            if row.last_used_at is None or now - row.last_used_at >= LAST_USED_RESOLUTION:
                conn.execute(
                    token_table.update().where(token_table.c.id == row.id).values(last_used_at=now)
                )
                self.audit.record(conn, "token.use", actor=Actor(row.owner_id, row.id))
            org_rows = conn.execute(_ORG_ROLES, {"user_id": row.owner_id})
            roles = {org.name_lower: org.role for org in org_rows}
        token = token_record(row).to_policy()
        principal = policy.Principal(row.owner_name, token, roles)
        return Caller(principal, row.owner_id, row.id, row.digest)

    def repo_access(self, repo_id: RepoId, user_id: int | None) -> tuple[RepoRecord | None, bool]:
        """The repository and whether ``user_id`` holds an accepted grant for it (gated
        repos only), in one transaction: this runs on every git request."""
        with self.store.begin() as conn:
            record = find_repo(conn, repo_id)
            granted = False
            if record is not None and user_id is not None and record.facts.gated != "off":
                status = conn.execute(GRANT_STATUS, {"repo_id": record.id, "user_id": user_id})
                granted = status.scalar() == "accepted"
        return record, granted
