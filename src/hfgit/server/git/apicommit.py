"""An API commit: a real git commit made with dulwich, checked and landed as a push is.

The new blobs, trees and the commit go through the same object checks as a pushed pack
(:class:`~.checks.PackChecker`: tree entry names such as ``.git``, ``.gitmodules``, modes
and order; :func:`~.checks.walk_tip`: connectivity and the blob limit, by path), and the
branch moves by compare-and-swap under the repository lock (:func:`~.refs.update_refs`).
A refused commit writes nothing: the objects join the store only once the swap will
happen. An LFS file the root ``.gitattributes`` does not track gets its tracking line,
as the Hub adds one, so that ``git clone`` with git-lfs sees the object.
"""

from __future__ import annotations

import stat
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from dulwich.objects import Blob, Commit, ShaFile, Tree
from dulwich.repo import Repo

from .checks import PackChecker, PackRejected, walk_tip
from .content import lfs_tracked, pointer_bytes
from .refs import update_refs

_FILE = 0o100644
_DIR = stat.S_IFDIR
#: Longest path an API commit may write, in bytes.
MAX_PATH_BYTES = 4096
#: How often a commit without ``parentCommit`` is rebuilt when another writer moved the
#: branch between reading it and swapping it.
ATTEMPTS = 5
STALE_PARENT = (
    "The branch was updated since you opened this page. Please refresh and try again "
    "(parent_commit is not the branch's head)."
)


class CommitRefused(Exception):
    """The commit cannot be made; nothing was written. ``code`` is the Hub's error code."""

    def __init__(self, status: int, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.code = code


@dataclass(frozen=True)
class AddFile:
    path: str
    data: bytes


@dataclass(frozen=True)
class AddLfs:
    path: str
    oid: str
    #: None for a copy, which names the object only.
    size: int | None


@dataclass(frozen=True)
class Delete:
    path: str
    folder: bool


@dataclass(frozen=True)
class Copy:
    src: str
    path: str


Operation = AddFile | AddLfs | Delete | Copy


@dataclass(frozen=True)
class CommitRequest:
    branch: str
    operations: Sequence[Operation]
    message: str
    author: bytes
    parent: str | None = None
    #: The first commit of an empty repository may create its default branch.
    create_branch: bool = False


@dataclass(frozen=True)
class CommitLimits:
    max_blob_bytes: int
    stale_lock_seconds: int


def check_path(path: object) -> str:
    """A file path as an API commit may write it: relative, plain segments only."""
    if not isinstance(path, str) or not path:
        raise CommitRefused(422, "Each operation needs a path: a non-empty string.")
    shown = ascii(path)
    if len(path.encode("utf-8", "surrogatepass")) > MAX_PATH_BYTES:
        raise CommitRefused(
            422, f"Invalid path {shown[:80]}...: longer than {MAX_PATH_BYTES} bytes."
        )
    if any(ord(char) < 0x20 or char in "\\\x7f" for char in path):
        raise CommitRefused(
            422, f"Invalid path {shown}: no backslashes or control characters in paths."
        )
    if any(segment in ("", ".", "..") for segment in path.split("/")):
        raise CommitRefused(
            422, f"Invalid path {shown}: no empty, '.' or '..' segments, no leading '/'."
        )
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise CommitRefused(422, f"Invalid path {shown}: not valid UTF-8.") from None
    return path


def attributes_line(path: str) -> str:
    """The ``.gitattributes`` line that tracks exactly ``path`` with LFS."""
    escaped = "".join("\\" + char if char in "*?[]\\!#" else char for char in path)
    escaped = escaped.replace(" ", "[[:space:]]")
    return f"{escaped} filter=lfs diff=lfs merge=lfs -text\n"


class _Dir:
    """A folder being edited: entries as they were, plus the edited subfolders."""

    def __init__(self, repo: Repo, sha: bytes | None) -> None:
        self.repo = repo
        self.entries: dict[bytes, tuple[int, bytes]] = {}
        self.children: dict[bytes, _Dir] = {}
        if sha is not None:
            tree = repo.object_store[sha]
            assert isinstance(tree, Tree)
            self.entries = {item.path: (item.mode, item.sha) for item in tree.iteritems()}

    def child(self, name: bytes, path: str, create: bool) -> _Dir | None:
        if name in self.children:
            return self.children[name]
        existing = self.entries.get(name)
        if existing is None:
            if not create:
                return None
            folder = _Dir(self.repo, None)
        elif stat.S_ISDIR(existing[0]):
            folder = _Dir(self.repo, existing[1])
        elif create:
            raise CommitRefused(409, f"Cannot write under {path}: it is a file.")
        else:
            return None
        self.children[name] = folder
        return folder

    def lookup(self, name: bytes) -> tuple[int, bytes | None] | None:
        if name in self.children:
            return (_DIR, None)
        return self.entries.get(name)


@dataclass
class _Build:
    repo: Repo
    root: _Dir
    new: dict[bytes, ShaFile] = field(default_factory=dict)

    def _parent(self, path: str, create: bool) -> tuple[_Dir | None, bytes]:
        *folders, leaf = path.split("/")
        here: _Dir | None = self.root
        for index, name in enumerate(folders):
            assert here is not None
            here = here.child(name.encode(), "/".join(folders[: index + 1]), create)
            if here is None:
                break
        return here, leaf.encode()

    def put(self, path: str, data: bytes) -> None:
        blob = Blob.from_string(data)
        self.new[blob.id] = blob
        folder, leaf = self._parent(path, create=True)
        assert folder is not None
        found = folder.lookup(leaf)
        if found is not None and stat.S_ISDIR(found[0]):
            raise CommitRefused(409, f"Cannot write the file {path}: it is a folder.")
        folder.entries[leaf] = (_FILE, blob.id)

    def read(self, path: str) -> bytes | None:
        folder, leaf = self._parent(path, create=False)
        found = folder.lookup(leaf) if folder is not None else None
        if found is None or not stat.S_ISREG(found[0]):
            return None
        sha = found[1]
        assert sha is not None
        obj = self.new.get(sha) or self.repo.object_store[sha]
        return obj.as_raw_string()

    def delete(self, path: str, folder_wanted: bool) -> None:
        folder, leaf = self._parent(path, create=False)
        found = folder.lookup(leaf) if folder is not None else None
        if found is None or stat.S_ISDIR(found[0]) != folder_wanted:
            kind = "folder" if folder_wanted else "file"
            raise CommitRefused(
                404, f"A {kind} with this name doesn't exist: {path}", "EntryNotFound"
            )
        assert folder is not None
        folder.entries.pop(leaf, None)
        folder.children.pop(leaf, None)

    def finish(self, folder: _Dir | None = None) -> bytes | None:
        """Write the edited trees bottom-up; None for a folder left empty."""
        folder = folder or self.root
        for name, child in folder.children.items():
            sha = self.finish(child)
            if sha is None:
                folder.entries.pop(name, None)
            else:
                folder.entries[name] = (_DIR, sha)
        folder.children = {}
        if not folder.entries and folder is not self.root:
            return None
        tree = Tree()
        for name, (mode, sha) in folder.entries.items():
            tree.add(name, mode, sha)
        self.new[tree.id] = tree
        return tree.id


def make_commit(
    repo: Repo,
    request: CommitRequest,
    limits: CommitLimits,
    lfs_sizes: Callable[[Iterable[str]], dict[str, int]],
) -> str:
    """Land ``request`` on its branch; returns the new commit id or raises CommitRefused."""
    ref = f"refs/heads/{request.branch}".encode()
    zero = b"0" * 40
    held = lfs_sizes({op.oid for op in request.operations if isinstance(op, AddLfs)})
    for _ in range(ATTEMPTS):
        head = _current(repo, ref)
        if head is None and not request.create_branch:
            raise CommitRefused(
                404, f"Revision Not Found for branch {request.branch!r}.", "RevisionNotFound"
            )
        if request.parent is not None and (head is None or not head.startswith(request.parent)):
            raise CommitRefused(412, STALE_PARENT)
        commit, new = _build(repo, head, request, limits, held)
        errors: dict[bytes, bytes] = {}

        def move_in(objects: dict[bytes, ShaFile] = new) -> None:
            repo.object_store.add_objects([(obj, None) for obj in objects.values()])

        command = ((head or "0" * 40).encode(), commit.id, ref)
        status = dict(
            update_refs(
                repo,
                [command],
                errors,
                zero=zero,
                atomic=True,
                stale_lock_seconds=limits.stale_lock_seconds,
                before_swap=move_in,
            )
        )
        if status.get(ref) == b"ok":
            return commit.id.decode()
        if status.get(ref) not in (b"fetch first", b"stale info"):
            raise CommitRefused(409, f"The branch is busy ({status.get(ref, b'?').decode()}).")
        if request.parent is not None:
            raise CommitRefused(412, STALE_PARENT)
    raise CommitRefused(409, "The branch kept moving while this commit was made: try again.")


def _current(repo: Repo, ref: bytes) -> str | None:
    try:
        return repo.refs[ref].decode()
    except KeyError:
        return None


def _build(
    repo: Repo,
    head: str | None,
    request: CommitRequest,
    limits: CommitLimits,
    held: dict[str, int],
) -> tuple[Commit, dict[bytes, ShaFile]]:
    parent = repo.object_store[head.encode()] if head else None
    assert parent is None or isinstance(parent, Commit)
    build = _Build(repo, _Dir(repo, parent.tree if parent else None))
    lfs_paths: list[str] = []
    for op in request.operations:
        if isinstance(op, AddFile):
            build.put(op.path, op.data)
        elif isinstance(op, AddLfs):
            size = held.get(op.oid)
            if size is None or (op.size is not None and op.size != size):
                raise CommitRefused(
                    422,
                    f"LFS object {op.oid} for {op.path} is not in this repository: upload it "
                    "through the LFS batch API of this repository first.",
                )
            build.put(op.path, pointer_bytes(op.oid, size))
            lfs_paths.append(op.path)
        elif isinstance(op, Copy):
            data = build.read(op.src)
            if data is None:
                raise CommitRefused(
                    404,
                    f"Cannot copy {op.src}: no such file in the parent commit.",
                    "EntryNotFound",
                )
            build.put(op.path, data)
        else:
            build.delete(op.path, op.folder)
    if lfs_paths:
        attributes = build.read(".gitattributes") or b""
        text = attributes
        for path in lfs_paths:
            if not lfs_tracked(text, path):
                if text and not text.endswith(b"\n"):
                    text += b"\n"
                text += attributes_line(path).encode()
        if text != attributes:
            build.put(".gitattributes", text)
    tree = build.finish()
    assert tree is not None
    now = int(time.time())
    commit = Commit()
    commit.tree = tree
    commit.parents = [parent.id] if parent else []
    commit.author = commit.committer = request.author
    commit.author_time = commit.commit_time = now
    commit.author_timezone = commit.commit_timezone = 0
    commit.encoding = b"UTF-8"
    commit.message = request.message.encode("utf-8", "replace")
    build.new[commit.id] = commit
    _check(repo, commit, build.new, limits)
    return commit, build.new


def _check(repo: Repo, commit: Commit, new: dict[bytes, ShaFile], limits: CommitLimits) -> None:
    """The checks a push gets: each object as the indexer sees it, then the walk."""
    checker = PackChecker(repo.object_format, limits.max_blob_bytes)
    try:
        for sha, obj in new.items():
            checker.add(sha, obj.type_num, obj.as_raw_chunks())
        graph = checker.finish(lambda sha: (new[sha].type_num, new[sha].as_raw_string()))
    except PackRejected as error:
        raise CommitRefused(422, f"Commit refused: {error}") from None
    report = walk_tip(commit.id, graph, repo.object_store.__contains__)
    if report.missing is not None:
        raise CommitRefused(422, "Commit refused: it refers to objects not in the repository.")
    if report.big_files:
        limit = f"{limits.max_blob_bytes / (1024 * 1024):g} MiB"
        files = ", ".join(sorted(report.big_files))
        raise CommitRefused(
            422,
            f"Your commit was rejected because it contains files larger than {limit}: {files}. "
            "Please use Git LFS to store large files: upload them as LFS files (huggingface_hub "
            "does when preupload answers uploadMode lfs), or git lfs track them and push.",
        )
