"""Repositories: their rows and their bare git directories on disk.

Audited: ``repo.create``, ``repo.update``, ``repo.move``, ``repo.delete``.
"""

from __future__ import annotations

import shutil
import time
import uuid
from pathlib import Path

from dulwich.repo import Repo as GitRepo

from .. import policy
from ..names import RepoId
from ..store import Store, accounts, repos
from .audit import AuditLog
from .errors import Conflict, InvalidInput
from .queries import REPO_QUERY, account, find_repo, new_hub_id, repo_record, require_repo
from .records import Actor, RepoRecord


class Repos:
    def __init__(self, store: Store, repos_dir: Path, audit: AuditLog) -> None:
        self.store = store
        self.repos_dir = repos_dir
        self.audit = audit

    def find(self, repo_id: RepoId) -> RepoRecord | None:
        with self.store.begin() as conn:
            return find_repo(conn, repo_id)

    def get(self, repo_id: RepoId) -> RepoRecord:
        """Like :meth:`find`, but a missing repository raises :class:`NotFound`."""
        with self.store.begin() as conn:
            return require_repo(conn, repo_id)

    def list(self, namespace: str | None = None) -> list[RepoRecord]:
        query = REPO_QUERY.order_by(repos.c.type, accounts.c.name_lower, repos.c.name_lower)
        if namespace is not None:
            query = query.where(accounts.c.name_lower == namespace.lower())
        with self.store.begin() as conn:
            return [repo_record(row) for row in conn.execute(query)]

    def path(self, record: RepoRecord) -> Path:
        """The bare repository on disk: by internal id, never by a user-supplied name."""
        return self.repos_dir / f"{record.storage_id}.git"

    def create(
        self,
        repo_id: RepoId,
        *,
        private: bool = False,
        gated: str = "off",
        creator: str | None = None,
        actor: Actor | None = None,
    ) -> RepoRecord:
        if gated not in policy.GATED_MODES:
            raise InvalidInput(f"Invalid gated mode {gated!r}: use auto, manual or off.")
        storage_id = uuid.uuid4().hex
        path = self.repos_dir / f"{storage_id}.git"
        with self.store.begin() as conn:
            ns_row = account(conn, repo_id.namespace)
            creator_id = account(conn, creator, "user").id if creator else None
            if ns_row.kind == "user" and creator_id is None:
                creator_id = ns_row.id
            if find_repo(conn, repo_id) is not None:
                raise Conflict(f"The {repo_id.type} {repo_id.repo_id} already exists.")
            conn.execute(
                repos.insert().values(
                    hub_id=new_hub_id(),
                    type=repo_id.type,
                    namespace_id=ns_row.id,
                    name=repo_id.name,
                    name_lower=repo_id.name.lower(),
                    private=private,
                    gated=gated,
                    creator_id=creator_id,
                    storage_id=storage_id,
                    created_at=time.time(),
                )
            )
            record = require_repo(conn, repo_id)
            detail = {"repo": str(record.repo_id), "private": private, "gated": gated}
            self.audit.record(conn, "repo.create", actor=actor, repo_id=record.id, detail=detail)
            # The bare repository is made last inside the transaction: if it fails, no row
            # points at a directory that does not exist.
            _init_bare(path)
        return record

    def update(
        self,
        repo_id: RepoId,
        *,
        private: bool | None = None,
        gated: str | None = None,
        actor: Actor | None = None,
    ) -> RepoRecord:
        """Change what is given (visibility, gating); with neither, change nothing."""
        values: dict[str, object] = {}
        if private is not None:
            values["private"] = private
        if gated is not None:
            if gated not in policy.GATED_MODES:
                raise InvalidInput(f"Invalid gated mode {gated!r}: use auto, manual or off.")
            values["gated"] = gated
        with self.store.begin() as conn:
            record = require_repo(conn, repo_id)
            if values:
                conn.execute(repos.update().where(repos.c.id == record.id).values(**values))
                detail = {"repo": str(record.repo_id), **values}
                self.audit.record(
                    conn, "repo.update", actor=actor, repo_id=record.id, detail=detail
                )
            return require_repo(conn, repo_id)

    def move(self, old: RepoId, new: RepoId, *, actor: Actor | None = None) -> RepoRecord:
        """Rename ``old`` to ``new``, within its namespace or into another, as the Hub's move.

        Only the row changes: storage stays under the repository's internal id, and what
        hangs off the row by id (LFS objects, locks, access grants, tokens' scopes)
        follows it. From the next request the old name answers as a missing repository
        and is free for a new one.
        """
        if old.type != new.type:
            raise InvalidInput("A move keeps the repository's type: give the same --type.")
        with self.store.begin() as conn:
            record = require_repo(conn, old)
            ns_row = account(conn, new.namespace)
            existing = find_repo(conn, new)
            if existing is not None and existing.id != record.id:
                raise Conflict(f"The {new.type} {new.repo_id} already exists.")
            if existing is not None and record.repo_id.repo_id == new.repo_id:
                raise InvalidInput(f"The {old.type} is already named {new.repo_id}.")
            conn.execute(
                repos.update()
                .where(repos.c.id == record.id)
                .values(namespace_id=ns_row.id, name=new.name, name_lower=new.name.lower())
            )
            moved = require_repo(conn, new)
            detail = {"repo": str(moved.repo_id), "from": str(record.repo_id)}
            self.audit.record(conn, "repo.move", actor=actor, repo_id=record.id, detail=detail)
        return moved

    def delete(self, repo_id: RepoId, *, actor: Actor | None = None) -> None:
        """Delete the row, then the directory. The audit row keeps the name: the id dies here."""
        with self.store.begin() as conn:
            record = require_repo(conn, repo_id)
            conn.execute(repos.delete().where(repos.c.id == record.id))
            detail = {"repo": str(record.repo_id)}
            self.audit.record(conn, "repo.delete", actor=actor, repo_id=record.id, detail=detail)
        path = self.path(record)
        # Rename first so a half-deleted tree is never served, then remove it.
        trash = path.with_name(f"{record.storage_id}.deleted")
        if path.exists():
            path.rename(trash)
            shutil.rmtree(trash, ignore_errors=True)


def _init_bare(path: Path) -> None:
    GitRepo.init_bare(str(path), mkdir=True)
    # Name the default branch as git does today; dulwich's default may differ.
    (path / "HEAD").write_text("ref: refs/heads/main\n")
