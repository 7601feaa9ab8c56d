"""Repository information as the Hub's API answers it: info, tree, paths-info, refs, commits.

Read from the bare repository behind the gate (:mod:`.filerepo`). File entries carry the
git blob id as ``oid`` and the file's real size (for an LFS file the object's, with
``lfs{oid,size,pointerSize}``); folders carry their tree id. Never ``xetHash``:
downloads stay plain HTTP. Pages are linked with an absolute ``Link: <…>; rel="next"``,
which the client requests as given.
"""

from __future__ import annotations

from itertools import islice
from urllib.parse import urlencode

from dulwich.objects import S_IFGITLINK, Commit
from werkzeug.wrappers import Request, Response

from ..names import RepoId
from ..policy import Action
from . import rawpath
from .api import iso, json_response
from .filerepo import FileApiSurface, entry_not_found
from .git.content import Entry, RepoReader
from .refusal import Refusal

#: Entries per tree page, as the Hub pages them (fewer when each is expanded).
TREE_PAGE = 1000
TREE_PAGE_EXPANDED = 50
COMMITS_PAGE = 50
#: Most paths one paths-info call may ask about.
MAX_PATHS = 10_000


def _flag(request: Request, name: str) -> bool:
    return request.args.get(name, "").lower() in ("1", "true")


def _cursor(request: Request, name: str) -> int:
    value = request.args.get(name) or "0"
    if not value.isdigit() or len(value) > 9:
        raise Refusal(400, f"Invalid {name}: expected a whole number.")
    return int(value)


def _title(commit: Commit) -> tuple[str, str]:
    message = commit.message.decode("utf-8", "replace")
    title = message.partition("\n")[0]
    return title, message


def _author(commit: Commit) -> str:
    return commit.author.decode("utf-8", "replace").split(" <", 1)[0]


def _commit_json(commit: Commit, formatted: bool = False) -> dict:
    title, message = _title(commit)
    data = {
        "id": commit.id.decode(),
        "authors": [{"user": _author(commit), "avatar": None}],
        "date": iso(commit.commit_time),
        "title": title,
        "message": message,
    }
    if formatted:
        data["formatted"] = {"title": title, "message": message}
    return data


class RepoInfoService(FileApiSurface):
    # Info

    def info(self, request: Request, repo: RepoId, rev: str | None = None) -> Response:
        revision = rawpath.revision(rev) if rev is not None else None
        access = self.access(request, repo, Action.READ)
        record = access.repo
        with self.reader(record) as reader:
            commit = self.commit_for(reader, revision or reader.default_branch())
            blobs = _flag(request, "blobs")
            siblings = []
            for entry in reader.walk(self._root(reader, commit), recursive=True):
                if entry.is_dir or entry.mode == S_IFGITLINK:
                    continue
                sibling: dict = {"rfilename": entry.path}
                if blobs:
                    file = reader.file_info(entry)
                    sibling.update(size=file.size, blobId=entry.sha)
                    if file.pointer:
                        sibling["lfs"] = {
                            "size": file.pointer.size,
                            "sha256": file.pointer.oid,
                            "pointerSize": file.blob_size,
                        }
                siblings.append(sibling)
        facts = record.facts
        data = {
            "_id": record.hub_id,
            "id": repo.repo_id,
            "author": repo.namespace,
            "sha": commit.id.decode(),
            "lastModified": iso(commit.commit_time),
            "createdAt": iso(record.created_at),
            "private": facts.private,
            "gated": False if facts.gated == "off" else facts.gated,
            "disabled": False,
            "downloads": 0,
            "likes": 0,
            "tags": [],
            "siblings": siblings,
        }
        if repo.type == "model":
            data["modelId"] = repo.repo_id
        return json_response(data)

    @staticmethod
    def _root(reader: RepoReader, commit: Commit) -> Entry:
        entry = reader.entry(commit, "")
        assert entry is not None
        return entry

    # Tree and paths-info

    def tree(self, request: Request, repo: RepoId, rev: str, path: str = "") -> Response:
        revision = rawpath.revision(rev)
        folder = rawpath.tree_path(path)
        recursive, expand = _flag(request, "recursive"), _flag(request, "expand")
        cursor = _cursor(request, "cursor")
        page = TREE_PAGE_EXPANDED if expand else TREE_PAGE
        access = self.access(request, repo, Action.READ)
        with self.reader(access.repo) as reader:
            commit = self.commit_for(reader, revision)
            entry = reader.entry(commit, folder)
            if entry is None or not entry.is_dir:
                raise entry_not_found(folder, commit.id.decode())
            walk = reader.walk(entry, recursive=recursive)
            entries = [e for e in islice(walk, cursor, cursor + page + 1)]
            items = [
                self._entry_json(reader, commit, e, expand)
                for e in entries[:page]
                if e.mode != S_IFGITLINK
            ]
        response = json_response(items)
        if len(entries) > page:
            query = {"recursive": str(recursive).lower(), "expand": str(expand).lower()}
            query["cursor"] = str(cursor + page)
            link = self.url(request, rawpath.raw_path(request.environ)) + "?" + urlencode(query)
            response.headers["Link"] = f'<{link}>; rel="next"'
        return response

    def paths_info(self, request: Request, repo: RepoId, rev: str) -> Response:
        revision = rawpath.revision(rev)
        paths = request.form.getlist("paths")
        if not paths and request.is_json:
            body = request.get_json(silent=True)
            paths = body.get("paths", []) if isinstance(body, dict) else []
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            raise Refusal(400, "paths must be a list of strings.")
        if len(paths) > MAX_PATHS:
            raise Refusal(400, f"Too many paths: at most {MAX_PATHS} in one call.")
        expand = request.form.get("expand", "").lower() == "true"
        access = self.access(request, repo, Action.READ)
        with self.reader(access.repo) as reader:
            commit = self.commit_for(reader, revision)
            items = []
            for path in dict.fromkeys(p.strip("/") for p in paths):
                if not path or any(part in ("", ".", "..") for part in path.split("/")):
                    continue
                entry = reader.entry(commit, path)
                if entry is not None and entry.mode != S_IFGITLINK:
                    items.append(self._entry_json(reader, commit, entry, expand))
        return json_response(items)

    @staticmethod
    def _entry_json(reader: RepoReader, commit: Commit, entry: Entry, expand: bool) -> dict:
        if entry.is_dir:
            data: dict = {"type": "directory", "oid": entry.sha, "size": 0, "path": entry.path}
        else:
            file = reader.file_info(entry)
            data = {"type": "file", "oid": entry.sha, "size": file.size, "path": entry.path}
            if file.pointer:
                data["lfs"] = {
                    "oid": file.pointer.oid,
                    "size": file.pointer.size,
                    "pointerSize": file.blob_size,
                }
        if expand:
            last = _last_commit(reader, commit, entry.path)
            if last is not None:
                title, _ = _title(last)
                data["lastCommit"] = {
                    "id": last.id.decode(),
                    "title": title,
                    "date": iso(last.commit_time),
                }
        return data

    # Refs and commits

    def refs(self, request: Request, repo: RepoId) -> Response:
        access = self.access(request, repo, Action.READ)
        with self.reader(access.repo) as reader:
            branches, tags = reader.branches(), reader.tags()
        data: dict = {
            "branches": [
                {"name": name, "ref": f"refs/heads/{name}", "targetCommit": sha}
                for name, sha in branches.items()
            ],
            "converts": [],
            "tags": [
                {"name": name, "ref": f"refs/tags/{name}", "targetCommit": sha}
                for name, sha in tags.items()
            ],
        }
        if _flag(request, "include_prs"):
            data["pullRequests"] = []
        return json_response(data)

    def commits(self, request: Request, repo: RepoId, rev: str) -> Response:
        revision = rawpath.revision(rev)
        page = _cursor(request, "p")
        formatted = "formatted" in request.args.getlist("expand[]")
        access = self.access(request, repo, Action.READ)
        with self.reader(access.repo) as reader:
            commit = self.commit_for(reader, revision)
            found, more = reader.history(commit, page * COMMITS_PAGE, COMMITS_PAGE)
            items = [_commit_json(item, formatted) for item in found]
        response = json_response(items)
        if more:
            query = [("p", str(page + 1))] + [("expand[]", "formatted")] * formatted
            link = self.url(request, rawpath.raw_path(request.environ)) + "?" + urlencode(query)
            response.headers["Link"] = f'<{link}>; rel="next"'
        return response


def _last_commit(reader: RepoReader, commit: Commit, path: str) -> Commit | None:
    """The latest commit that changed ``path``, from ``commit`` back."""
    walker = reader.repo.get_walker(include=[commit.id], paths=[path.encode()], max_entries=1)
    for item in walker:
        return item.commit
    return None
