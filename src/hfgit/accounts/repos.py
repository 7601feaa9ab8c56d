"""Repositories: their rows and their bare git directories on disk.

Audited: ``repo.create``, ``repo.update``, ``repo.move``, ``repo.delete``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import time
import uuid
from pathlib import Path

from dulwich.repo import Repo as GitRepo

from .. import policy
from ..names import RepoId
from ..store import Store, accounts, repos
from .audit import AuditLog
from .errors import Conflict, InvalidInput, StorageUnavailable
from .queries import REPO_QUERY, account, find_repo, new_hub_id, repo_record, require_repo
from .records import Actor, RepoRecord

log = logging.getLogger(__name__)

#: What hfgit names storage directories: ``uuid4().hex``.
STORAGE_ID = re.compile(r"[0-9a-f]{32}")


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
        """The bare repository on disk, by internal id, checked to be what it must be.

        Every opener (git, LFS, maintenance) comes here. A storage path that is a
        symlink or anything but a directory, or a storage id that is not one hfgit
        makes (so it could name another directory), raises :class:`StorageUnavailable`
        and is logged by the repository's name: following a link would serve another
        repository's objects under this one's permissions. A missing directory is
        returned as it is, for the opener to report. One ``lstat``, no ``realpath``.
        """
        path = self.repos_dir / f"{record.storage_id}.git"
        if STORAGE_ID.fullmatch(record.storage_id) is None:
            log.error("refusing to serve %s: its storage id is not one hfgit makes", record.repo_id)
            raise StorageUnavailable(UNAVAILABLE)
        try:
            mode = os.lstat(path).st_mode
        except FileNotFoundError:
            return path
        if not stat.S_ISDIR(mode):
            kind = "a symlink" if stat.S_ISLNK(mode) else "not a directory"
            log.error("refusing to serve %s: its storage %s is %s", record.repo_id, path, kind)
            raise StorageUnavailable(UNAVAILABLE)
        return path

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


UNAVAILABLE = "This repository's storage is unavailable."


def _init_bare(path: Path) -> None:
    """A new bare repository at ``path``, which must not exist in any form.

    ``mkdir`` neither follows a symlink in the last component nor reuses an existing
    directory, and the directory is checked again before git's files go in, so a
    planted link or directory can never redirect a new repository.
    """
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        log.error("refusing to create a repository at %s: the path already exists", path)
        raise StorageUnavailable(
            "The storage for the new repository already exists; nothing was created."
        ) from None
    if not stat.S_ISDIR(os.lstat(path).st_mode):
        raise StorageUnavailable("The storage for the new repository was replaced; try again.")
    GitRepo.init_bare(str(path), mkdir=False)
    # Name the default branch as git does today; dulwich's default may differ.
    (path / "HEAD").write_text("ref: refs/heads/main\n")
