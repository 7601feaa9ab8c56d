"""The Hub's file API for downloads and uploads: resolve, preupload, commit, branches, tags.

``/resolve/{rev}/{path}`` serves a file's bytes (an LFS file's object, not its pointer)
with the headers ``huggingface_hub`` needs (``X-Repo-Commit``, ``ETag``,
``X-Linked-Etag``/``X-Linked-Size``), single ``Range`` requests and a streamed body.
``commit/{rev}`` reads the client's NDJSON and lands a git commit through
:mod:`.git.apicommit`: the same object checks, lock, compare-and-swap and audit as a
push. Xet is not served: its token route answers with what to set instead.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Callable
from typing import BinaryIO

from dulwich.objects import S_IFGITLINK, Tag
from werkzeug.wrappers import Request, Response
from werkzeug.wsgi import wrap_file

from ..accounts import Actor
from ..config import MiB
from ..lfs import ObjectMissing
from ..names import RepoId
from ..policy import Action
from . import rawpath
from .api import error_response, json_response
from .body import JSON_MAX_DEPTH, JSON_MAX_ITEMS, check_json_shape, open_body
from .filerepo import FileApiSurface, entry_not_found, revision_not_found
from .gate import Access
from .git.apicommit import (
    AddFile,
    AddLfs,
    CommitLimits,
    CommitRefused,
    CommitRequest,
    Copy,
    Delete,
    Operation,
    check_path,
    make_commit,
)
from .git.content import RepoReader, ignored, lfs_tracked, valid_revision_name
from .git.refs import update_refs
from .refusal import Refusal

#: The NDJSON of one API commit is read whole (regular files come base64 in it).
MAX_COMMIT_BODY = 512 * MiB
MAX_OPERATIONS = 100_000
XET_MESSAGE = (
    "hfgit does not serve Xet storage. Set HF_HUB_DISABLE_XET=1 in the environment of "
    "huggingface_hub (hf upload, upload_file, upload_folder): large files then go "
    "through Git LFS, which hfgit serves."
)
NO_PULL_REQUESTS = (
    "hfgit has no pull requests (create_pr): commit to a branch instead, for example "
    "create_branch() then revision=<branch>."
)
_OID = re.compile(r"[0-9a-f]{64}")
_ZERO = b"0" * 40


def _nothing() -> None:
    pass


class _Window:
    """The first ``length`` bytes of a stream, for a range that ends before the file."""

    def __init__(self, handle: BinaryIO, length: int) -> None:
        self.handle = handle
        self.left = length

    def read(self, size: int = -1) -> bytes:
        if self.left <= 0:
            return b""
        size = self.left if size < 0 else min(size, self.left)
        data = self.handle.read(size)
        self.left -= len(data)
        return data

    def close(self) -> None:
        self.handle.close()


class _Bytes:
    """A blob's bytes as a stream from an offset."""

    def __init__(self, data: bytes, start: int) -> None:
        self.view = memoryview(data)[start:]

    def read(self, size: int = -1) -> bytes:
        size = len(self.view) if size < 0 else size
        chunk, self.view = self.view[:size], self.view[size:]
        return bytes(chunk)

    def close(self) -> None:
        self.view = memoryview(b"")


def _bad(message: str) -> Refusal:
    return Refusal(400, message)


def _from_commit_error(error: CommitRefused) -> Refusal:
    return Refusal(error.status, error.message, code=error.code)


class FilesService(FileApiSurface):
    # Download

    def resolve(self, request: Request, repo: RepoId, rev: str, path: str) -> Response:
        revision = rawpath.revision(rev)
        name = rawpath.file_path(path)
        access = self.access(request, repo, Action.READ)
        record = access.repo
        with self.reader(record, cached=True) as reader:
            commit = self.commit_for(reader, revision)
            sha = commit.id.decode()
            entry = reader.entry(commit, name)
            if entry is None or entry.is_dir or entry.mode == S_IFGITLINK:
                raise entry_not_found(name, sha)
            info, data = reader.read_file(entry)
            if info.pointer is None:
                return self._send(request, sha, entry.sha, len(data), lambda s: _Bytes(data, s))
        oid, size = info.pointer.oid, info.pointer.size
        if self.lfs.objects.sizes(record.id, [oid]).get(oid) != size:
            raise entry_not_found(name, sha)

        def open_object(start: int) -> BinaryIO:
            try:
                return self.lfs.storage.open(record.storage_id, oid, size, start=start)
            except ObjectMissing:
                raise entry_not_found(name, sha) from None

        return self._send(request, sha, oid, size, open_object, linked=True)

    def _send(
        self,
        request: Request,
        commit: str,
        etag: str,
        size: int,
        open_at: Callable[[int], BinaryIO],
        *,
        linked: bool = False,
    ) -> Response:
        headers = {
            "X-Repo-Commit": commit,
            "ETag": f'"{etag}"',
            "Accept-Ranges": "bytes",
            "Cache-Control": "private, max-age=0, must-revalidate",
        }
        if linked:
            headers["X-Linked-Etag"] = f'"{etag}"'
            headers["X-Linked-Size"] = str(size)
        start, stop, status = 0, size, 200
        wanted = request.range if "Range" in request.headers else None
        if wanted is not None and wanted.units == "bytes" and len(wanted.ranges) == 1:
            window = wanted.range_for_length(size)
            if window is None:
                refused = error_response(416, f"Requested range not satisfiable (size {size}).")
                refused.headers.update(headers)
                refused.headers["Content-Range"] = f"bytes */{size}"
                return refused
            start, stop = window
            status = 206
            headers["Content-Range"] = f"bytes {start}-{stop - 1}/{size}"
        if request.method == "HEAD":
            response = Response(b"", status=status, mimetype="application/octet-stream")
        else:
            handle = open_at(start)
            body = handle if stop == size else _Window(handle, stop - start)
            response = Response(
                wrap_file(request.environ, body, buffer_size=MiB),
                status=status,
                mimetype="application/octet-stream",
                direct_passthrough=True,
            )
        response.headers.update(headers)
        response.headers["Content-Length"] = str(stop - start)
        return response

    # Upload

    def preupload(self, request: Request, repo: RepoId, rev: str) -> Response:
        branch = self._branch(rawpath.revision(rev))
        if request.args.get("create_pr"):
            raise _bad(NO_PULL_REQUESTS)
        access = self.access(request, repo, Action.WRITE)
        body = request.get_json(silent=True)
        files = body.get("files") if isinstance(body, dict) else None
        if not isinstance(files, list) or not all(isinstance(f, dict) for f in files):
            raise _bad('Send JSON {"files": [{"path", "sample", "size"}, ...]}.')
        if len(files) > MAX_OPERATIONS:
            raise _bad(f"Too many files in one preupload: at most {MAX_OPERATIONS}.")
        limit = self.settings.max_blob_bytes
        answers = []
        gitignore = body.get("gitIgnore")
        if gitignore is not None and not isinstance(gitignore, str):
            raise _bad("gitIgnore must be the text of a .gitignore file.")
        with self.reader(access.repo) as reader:
            commit = self._head(reader, branch)
            attributes = reader.attributes(commit)
            # The .gitignore being uploaded wins over the branch's, as on the Hub.
            if gitignore is None:
                ignore = reader.attributes(commit, ".gitignore")
            else:
                ignore = gitignore.encode("utf-8", "replace")
            for item in files:
                path, size = item.get("path"), item.get("size")
                if not isinstance(size, int) or isinstance(size, bool) or size < 0:
                    raise _bad("Each file needs a size: a whole number of bytes.")
                try:
                    path = check_path(path)
                except CommitRefused as error:
                    raise _from_commit_error(error) from None
                lfs = size > limit or lfs_tracked(attributes, path)
                answer = {
                    "path": path,
                    "uploadMode": "lfs" if lfs else "regular",
                    "shouldIgnore": ignored(ignore, path),
                }
                entry = reader.entry(commit, path) if commit is not None else None
                if entry is not None and not entry.is_dir:
                    pointer = reader.file_info(entry).pointer
                    answer["oid"] = pointer.oid if pointer else entry.sha
                answers.append(answer)
        return json_response(
            {"files": answers, "commitOid": commit.id.decode() if commit else None}
        )

    def commit(self, request: Request, repo: RepoId, rev: str) -> Response:
        branch = self._branch(rawpath.revision(rev))
        if request.args.get("create_pr"):
            raise _bad(NO_PULL_REQUESTS)
        access = self.access(request, repo, Action.WRITE)
        limit = min(self.settings.max_push_bytes, MAX_COMMIT_BODY)
        read = open_body(request.environ, limit)
        chunks = []
        while chunk := read(MiB):
            chunks.append(chunk)
        header, operations = _parse_commit(b"".join(chunks))
        record = access.repo
        caller = access.caller
        assert caller is not None
        message = header["summary"].rstrip("\n")
        if header.get("description"):
            message += "\n\n" + header["description"].rstrip("\n")
        user = caller.principal.user
        with self.reader(record) as reader:
            create = not reader.has_commits() and branch == reader.default_branch()
            request_ = CommitRequest(
                branch=branch,
                operations=operations,
                message=message + "\n",
                author=f"{user} <{user}@users.noreply.hfgit>".encode(),
                parent=header.get("parentCommit"),
                create_branch=create,
            )
            limits = CommitLimits(self.settings.max_blob_bytes, self.settings.stale_lock_seconds)
            try:
                sha = make_commit(
                    reader.repo,
                    request_,
                    limits,
                    lambda oids: self.lfs.objects.sizes(record.id, oids),
                )
            except CommitRefused as error:
                raise _from_commit_error(error) from None
        self._audit("api.commit", access, {"ref": f"refs/heads/{branch}", "new": sha})
        return json_response(
            {
                "success": True,
                "commitOid": sha,
                "commitUrl": self.url(request, f"{repo.url_path}/commit/{sha}"),
            }
        )

    def _head(self, reader: RepoReader, branch: str):
        """The branch's commit; None for the default branch of an empty repository."""
        commit = reader.resolve(f"refs/heads/{branch}")
        if commit is None:
            if not reader.has_commits() and branch == reader.default_branch():
                return None
            raise revision_not_found(branch, empty=not reader.has_commits())
        return commit

    @staticmethod
    def _branch(revision: str) -> str:
        name = revision.removeprefix("refs/heads/")
        if name.startswith("refs/"):
            raise _bad(f"Invalid reference for a branch: {revision}. {NO_PULL_REQUESTS}")
        if not valid_revision_name(name):
            raise _bad(f"Invalid branch name: {revision!r}.")
        return name

    # Branches and tags

    def create_branch(self, request: Request, repo: RepoId, rev: str) -> Response:
        name = self._branch(rawpath.revision(rev))
        access = self.access(request, repo, Action.WRITE)
        body = request.get_json(silent=True) or {}
        start = body.get("startingPoint") if isinstance(body, dict) else None
        if start is not None and not isinstance(start, str):
            raise _bad("startingPoint must be a revision: a branch, a tag or a commit id.")
        with self.reader(access.repo) as reader:
            commit = self.commit_for(reader, start or reader.default_branch())
            ref = f"refs/heads/{name}"
            if reader.ref_value(ref) is not None:
                raise Refusal(409, f"Reference {ref} already exists")
            self._move(reader, ref, None, commit.id)
        self._audit("api.branch.create", access, {"ref": ref, "new": commit.id.decode()})
        return json_response({})

    def delete_branch(self, request: Request, repo: RepoId, rev: str) -> Response:
        name = self._branch(rawpath.revision(rev))
        access = self.access(request, repo, Action.WRITE)
        ref = f"refs/heads/{name}"
        with self.reader(access.repo) as reader:
            if name == reader.default_branch():
                raise Refusal(403, f"Cannot delete {ref}: it is the default branch.")
            old = reader.ref_value(ref)
            if old is None:
                raise revision_not_found(name)
            self._move(reader, ref, old.encode(), None)
        self._audit("api.branch.delete", access, {"ref": ref, "old": old})
        return json_response({})

    def create_tag(self, request: Request, repo: RepoId, rev: str) -> Response:
        revision = rawpath.revision(rev)
        body = request.get_json(silent=True)
        if not isinstance(body, dict) or not isinstance(body.get("tag"), str):
            raise _bad('Send JSON {"tag": name, "message"?: text}.')
        name, message = body["tag"], body.get("message")
        if name.startswith("refs/") or not valid_revision_name(name):
            raise _bad(f"Invalid tag name: {name!r}.")
        if message is not None and not isinstance(message, str):
            raise _bad("message must be a string.")
        access = self.access(request, repo, Action.WRITE)
        ref = f"refs/tags/{name}"
        with self.reader(access.repo) as reader:
            commit = self.commit_for(reader, revision)
            if reader.ref_value(ref) is not None:
                raise Refusal(409, f"Tag {name} already exists")
            target, tag = commit.id, None
            if message:
                user = access.caller.principal.user if access.caller else "hfgit"
                tag = Tag()
                tag.name = name.encode()
                tag.object = (type(commit), commit.id)
                tag.tagger = f"{user} <{user}@users.noreply.hfgit>".encode()
                tag.tag_time = commit.commit_time
                tag.tag_timezone = 0
                tag.message = message.encode("utf-8", "replace") + b"\n"
                target = tag.id
            self._move(reader, ref, None, target, tag)
        self._audit("api.tag.create", access, {"ref": ref, "new": target.decode()})
        return json_response({})

    def delete_tag(self, request: Request, repo: RepoId, rev: str) -> Response:
        name = rawpath.revision(rev)
        access = self.access(request, repo, Action.WRITE)
        ref = f"refs/tags/{name}"
        with self.reader(access.repo) as reader:
            old = reader.ref_value(ref) if valid_revision_name(name) else None
            if old is None:
                raise revision_not_found(name)
            self._move(reader, ref, old.encode(), None)
        self._audit("api.tag.delete", access, {"ref": ref, "old": old})
        return json_response({})

    def _move(self, reader: RepoReader, ref: str, old: bytes | None, new: bytes | None, obj=None):
        """One ref update by compare-and-swap under the repository lock, as a push does."""
        repo = reader.repo

        def add_object() -> None:
            if obj is not None:
                repo.object_store.add_object(obj)

        status = dict(
            update_refs(
                repo,
                [(old or _ZERO, new or _ZERO, ref.encode())],
                {},
                zero=_ZERO,
                atomic=True,
                stale_lock_seconds=self.settings.stale_lock_seconds,
                before_swap=add_object,
            )
        )
        result = status.get(ref.encode(), b"")
        if result != b"ok":
            raise Refusal(409, f"Could not update {ref}: {result.decode('utf-8', 'replace')}.")

    # Xet, metadata validation and the client's side calls

    def xet_write_token(self, request: Request, repo: RepoId, rev: str) -> Response:
        self.access(request, repo, Action.WRITE)
        raise Refusal(400, XET_MESSAGE, code="XetNotSupported")

    def xet_read_token(self, request: Request, repo: RepoId, rev: str) -> Response:
        self.access(request, repo, Action.READ)
        raise Refusal(400, XET_MESSAGE, code="XetNotSupported")

    def validate_yaml(self, request: Request) -> Response:
        # hfgit keeps no model-card metadata: any README is accepted as it is.
        return json_response({"errors": [], "warnings": []})

    def agent_harnesses(self, request: Request) -> Response:
        # Asked once a day by every client process; a non-empty answer is cached.
        return json_response({"standardEnvVars": [], "harnesses": {}})

    def _audit(self, event: str, access: Access, detail: dict) -> None:
        caller = access.caller
        self.accounts.audit.append(
            event,
            actor=Actor(caller.user_id, caller.token_id) if caller else None,
            repo_id=access.repo.id,
            detail=detail,
        )


def _parse_commit(raw: bytes) -> tuple[dict, list[Operation]]:
    """The header and the operations of the client's NDJSON commit body."""
    header: dict | None = None
    operations: list[Operation] = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            check_json_shape(line, max_depth=JSON_MAX_DEPTH, max_items=JSON_MAX_ITEMS)
            item = json.loads(line)
        except ValueError:
            raise _bad(f"Line {number} of the commit is not JSON.") from None
        if not isinstance(item, dict) or not isinstance(item.get("value"), dict):
            raise _bad(f'Line {number} of the commit must be {{"key": ..., "value": {{...}}}}.')
        key, value = item.get("key"), item["value"]
        if key == "header":
            if header is not None or operations:
                raise _bad("The commit header must come first, once.")
            header = _header(value)
            continue
        if header is None:
            raise _bad("The commit header must come first, once.")
        if len(operations) >= MAX_OPERATIONS:
            raise _bad(f"Too many operations in one commit: at most {MAX_OPERATIONS}.")
        try:
            operations.append(_operation(key, value, number))
        except CommitRefused as error:
            raise _from_commit_error(error) from None
    if header is None:
        raise _bad("The commit needs a header line with a summary.")
    return header, operations


def _header(value: dict) -> dict:
    summary, description = value.get("summary"), value.get("description") or ""
    parent = value.get("parentCommit")
    if not isinstance(summary, str) or not summary.strip():
        raise _bad("The commit needs a summary (its message).")
    if not isinstance(description, str):
        raise _bad("The commit description must be a string.")
    if parent is not None and (
        not isinstance(parent, str) or not re.fullmatch(r"[0-9a-f]{5,40}", parent)
    ):
        raise _bad("parentCommit must be a commit id (hex).")
    return {"summary": summary, "description": description, "parentCommit": parent}


def _operation(key: object, value: dict, number: int) -> Operation:
    if key == "file":
        content = value.get("content")
        encoding = value.get("encoding", "base64")
        if not isinstance(content, str) or encoding not in ("base64", "utf-8"):
            raise _bad(f"Line {number}: a file needs content, base64-encoded.")
        if encoding == "utf-8":
            return AddFile(check_path(value.get("path")), content.encode())
        try:
            data = base64.b64decode(content, validate=True)
        except (binascii.Error, ValueError):
            raise _bad(f"Line {number}: the file's content is not valid base64.") from None
        return AddFile(check_path(value.get("path")), data)
    if key == "lfsFile":
        oid, size = value.get("oid"), value.get("size")
        if value.get("algo", "sha256") != "sha256" or not isinstance(oid, str):
            raise _bad(f"Line {number}: an lfsFile needs a sha256 oid.")
        if not _OID.fullmatch(oid):
            raise _bad(f"Line {number}: the oid must be 64 lowercase hex characters.")
        if size is not None and (not isinstance(size, int) or isinstance(size, bool) or size < 0):
            raise _bad(f"Line {number}: the size must be a whole number of bytes.")
        return AddLfs(check_path(value.get("path")), oid, size)
    if key in ("deletedFile", "deletedFolder"):
        path = value.get("path")
        if key == "deletedFolder" and isinstance(path, str):
            path = path.removesuffix("/")
        return Delete(check_path(path), folder=key == "deletedFolder")
    if key == "copyFile":
        return Copy(check_path(value.get("srcPath")), check_path(value.get("path")))
    raise _bad(f"Line {number}: unknown operation {key!r}.")
