"""What the Hub's file API surfaces share: the gate as the Hub words it, the repository
on disk, revisions, and the API's error dialect (JSON plus ``X-Error-Code`` and
``X-Error-Message``; ``X-Repo-Commit`` on an ``EntryNotFound`` so the client caches the
miss).
"""

from __future__ import annotations

import logging

from dulwich.errors import NotGitRepository
from dulwich.objects import Commit
from werkzeug.wrappers import Request, Response

from ..accounts import Accounts, RepoRecord
from ..config import MiB, Settings
from ..names import RepoId
from ..policy import Action
from .api import INVALID_CREDENTIALS, error_response, hub_refusal
from .body import BoundedJson
from .gate import Access, Gate
from .git.content import RepoReader
from .lfs import LfsService
from .refusal import Refusal
from .surface import Surface
from .urls import public_base

log = logging.getLogger(__name__)


class FileRefusal(Refusal):
    """A refusal that names the commit it was answered for (``X-Repo-Commit``)."""

    def __init__(self, status: int, message: str, *, code: str | None, commit: str) -> None:
        super().__init__(status, message, code=code)
        self.commit = commit


def revision_not_found(revision: str, empty: bool = False) -> Refusal:
    message = f"Invalid rev id: {revision}"
    if empty:
        message = (
            f"Revision Not Found for {revision!r}: this repository is empty (no commit yet). "
            "Push a git history or upload a file first."
        )
    return Refusal(404, message, code="RevisionNotFound")


def entry_not_found(path: str, commit: str) -> FileRefusal:
    return FileRefusal(404, f"Entry not found: {path}", code="EntryNotFound", commit=commit)


class FileApiRequest(Request):
    json_module = BoundedJson
    #: Preupload and paths-info bodies; the commit's NDJSON is read with its own limit.
    max_content_length = 4 * MiB
    max_form_memory_size = 4 * MiB


class FileApiSurface(Surface):
    """A surface of the file API: answers from the bare repositories behind the gate."""

    request_class = FileApiRequest

    def __init__(self, settings: Settings, accounts: Accounts, gate: Gate, lfs: LfsService):
        self.settings = settings
        self.accounts = accounts
        self.gate = gate
        self.lfs = lfs

    def refuse(self, refusal: Refusal, request: Request) -> Response:
        message = INVALID_CREDENTIALS if refusal.reason == "invalid" else refusal.message
        response = error_response(refusal.status, message, refusal.code)
        if isinstance(refusal, FileRefusal):
            response.headers["X-Repo-Commit"] = refusal.commit
        return response

    def access(self, request: Request, repo_id: RepoId, action: Action) -> Access:
        access = self.gate.check(self.gate.caller(request.environ), repo_id, action)
        refusal = hub_refusal(access)
        if refusal is not None:
            raise refusal
        assert access.repo is not None
        return access

    def reader(self, record: RepoRecord, *, cached: bool = False) -> RepoReader:
        """The repository on disk; ``cached`` (reads only) reuses this thread's open copy."""
        path = str(self.accounts.repos.path(record))
        try:
            return RepoReader.cached(path) if cached else RepoReader(path)
        except NotGitRepository:
            log.error("repository storage missing for %s", record.repo_id)
            raise Refusal(503, "This repository's storage is unavailable.") from None

    @staticmethod
    def commit_for(reader: RepoReader, revision: str) -> Commit:
        commit = reader.resolve(revision)
        if commit is None:
            raise revision_not_found(revision, empty=not reader.has_commits())
        return commit

    def url(self, request: Request, path: str) -> str:
        """An absolute URL on this server's public base (:func:`.urls.public_base`).

        huggingface_hub checks that a commit URL is on the host it called: that is the
        public URL an operator configures, never a client-supplied ``Host``.
        """
        return f"{public_base(self.settings, request)}/{path.lstrip('/')}"
