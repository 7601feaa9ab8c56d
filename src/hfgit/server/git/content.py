"""Reading a bare repository for the Hub's file API: revisions, trees, blobs, history.

No HTTP here: the file API's surfaces ask, this module answers from the objects with
dulwich. A revision is a branch, a tag (peeled), a full ref name or a full commit id;
LFS pointers are recognised so that callers can describe the object they stand for.
"""

from __future__ import annotations

import atexit
import io
import os
import re
import stat
import threading
import weakref
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass
from typing import ClassVar

from dulwich.attrs import compile_gitattributes_patterns, match_path, parse_git_attributes
from dulwich.errors import NotGitRepository
from dulwich.ignore import IgnoreFilter, read_ignore_patterns
from dulwich.objects import Blob, Commit, Tag, Tree
from dulwich.refs import check_ref_format
from dulwich.repo import Repo

#: git-lfs writes pointers well under this; anything bigger is a file's own bytes.
MAX_POINTER_BYTES = 1024
_POINTER = re.compile(
    rb"version https://git-lfs\.github\.com/spec/v1\n"
    rb"oid sha256:(?P<oid>[0-9a-f]{64})\n"
    rb"size (?P<size>0|[1-9][0-9]{0,17})\n"
)
_SHA1 = re.compile(r"[0-9a-f]{40}")
#: Open repositories kept per thread by :meth:`RepoReader.cached`.
CACHED_REPOS_PER_THREAD = 8


@dataclass(frozen=True)
class Pointer:
    """An LFS pointer: the object's sha256 and its size in bytes."""

    oid: str
    size: int


def parse_pointer(data: bytes) -> Pointer | None:
    """The pointer ``data`` is, or None when it is a file's own bytes."""
    if len(data) > MAX_POINTER_BYTES:
        return None
    match = _POINTER.fullmatch(data)
    if match is None:
        return None
    return Pointer(match["oid"].decode(), int(match["size"]))


def pointer_bytes(oid: str, size: int) -> bytes:
    """The pointer git-lfs writes for an object."""
    return f"version https://git-lfs.github.com/spec/v1\noid sha256:{oid}\nsize {size}\n".encode()


@dataclass(frozen=True)
class Entry:
    """One path of a tree: a file (blob), a folder (tree), a symlink or a submodule."""

    path: str
    mode: int
    sha: str

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


@dataclass(frozen=True)
class FileInfo:
    """What a file is: its blob's size, and the LFS object when the blob is a pointer."""

    blob_size: int
    pointer: Pointer | None

    @property
    def size(self) -> int:
        return self.pointer.size if self.pointer else self.blob_size


def lfs_tracked(attributes: bytes, path: str) -> bool:
    """Whether a root ``.gitattributes`` gives ``path`` the ``filter=lfs`` attribute."""
    patterns = compile_gitattributes_patterns(parse_git_attributes(io.BytesIO(attributes)))
    return match_path(patterns, path.encode()).get(b"filter") == b"lfs"


def ignored(gitignore: bytes, path: str) -> bool:
    """Whether a root ``.gitignore`` with this content ignores ``path``."""
    if not gitignore:
        return False
    patterns = IgnoreFilter(read_ignore_patterns(io.BytesIO(gitignore)))
    return bool(patterns.is_ignored(path))


def valid_revision_name(name: str) -> bool:
    """A revision the API may name: a full ref, a branch or tag name, or a commit id."""
    if not name or "\x00" in name or name.startswith("-"):
        return False
    full = name if name.startswith("refs/") else f"refs/heads/{name}"
    try:
        return check_ref_format(full.encode())
    except UnicodeEncodeError:  # a lone surrogate from a JSON body
        return False


class RepoReader:
    """Read-only views of one bare repository; close it (or use ``with``) when done."""

    def __init__(self, path: str, repo: Repo | None = None) -> None:
        self.repo = repo if repo is not None else Repo(path, bare=True)
        self._owned = repo is None

    @classmethod
    def cached(cls, path: str) -> RepoReader:
        """A reader on this thread's open copy of the repository, for reads only.

        Opening a dulwich ``Repo`` (config, pack index fan-outs) costs more than serving
        a small file. The copy is reused only while the repository directory is the same
        one and its pack directory holds the same pack files (they are immutable once
        named), so a repack or a prune is seen at once; refs and loose objects are read
        from disk on every request anyway. Per thread, as dulwich's packs are not safe
        to share between threads.
        """
        return cls(path, _REPOS.get(path))

    def close(self) -> None:
        if self._owned:
            self.repo.close()

    def __enter__(self) -> RepoReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # Revisions

    def has_commits(self) -> bool:
        return any(self.repo.refs.keys(base=b"refs/heads")) or any(
            self.repo.refs.keys(base=b"refs/tags")
        )

    def default_branch(self) -> str:
        target = self.repo.refs.get_symrefs().get(b"HEAD", b"refs/heads/main")
        return target.decode().removeprefix("refs/heads/")

    def ref_value(self, ref: str) -> str | None:
        try:
            return self.repo.refs[ref.encode()].decode()
        except KeyError:
            return None

    def resolve(self, revision: str) -> Commit | None:
        """The commit ``revision`` names, or None when it names none."""
        if not valid_revision_name(revision):
            return None
        if _SHA1.fullmatch(revision):
            commit = self._peel(revision.encode())
            if commit is not None:
                return commit
        candidates = (
            [revision]
            if revision.startswith("refs/")
            else [f"refs/heads/{revision}", f"refs/tags/{revision}"]
        )
        for ref in candidates:
            value = self.ref_value(ref)
            if value is not None:
                return self._peel(value.encode())
        return None

    def _peel(self, sha: bytes) -> Commit | None:
        store = self.repo.object_store
        for _ in range(10):
            try:
                obj = store[sha]
            except KeyError:
                return None
            if isinstance(obj, Commit):
                return obj
            if not isinstance(obj, Tag):
                return None
            sha = obj.object[1]
        return None

    # Trees and blobs

    def entry(self, commit: Commit, path: str) -> Entry | None:
        """The entry at ``path`` in ``commit`` (``""`` is the root folder), or None."""
        if not path:
            return Entry("", stat.S_IFDIR, commit.tree.decode())
        tree_sha = commit.tree
        parts = path.split("/")
        store = self.repo.object_store
        for index, part in enumerate(parts):
            tree = store[tree_sha]
            if not isinstance(tree, Tree):
                return None
            try:
                mode, sha = tree[part.encode()]
            except KeyError:
                return None
            if index == len(parts) - 1:
                return Entry(path, mode, sha.decode())
            if not stat.S_ISDIR(mode):
                return None
            tree_sha = sha
        return None

    def walk(self, folder: Entry, *, recursive: bool) -> Iterator[Entry]:
        """The entries of a folder, in git's order; depth first with ``recursive``."""
        tree = self.repo.object_store[folder.sha.encode()]
        assert isinstance(tree, Tree)
        prefix = f"{folder.path}/" if folder.path else ""
        for item in tree.iteritems():
            name = item.path.decode("utf-8", "surrogateescape")
            entry = Entry(prefix + name, item.mode, item.sha.decode())
            yield entry
            if recursive and entry.is_dir:
                yield from self.walk(entry, recursive=True)

    def blob(self, sha: str) -> bytes:
        obj = self.repo.object_store[sha.encode()]
        assert isinstance(obj, Blob)
        return obj.as_raw_string()

    def file_info(self, entry: Entry) -> FileInfo:
        """The blob's size and, when the blob is an LFS pointer, the object it names."""
        return self.read_file(entry)[0]

    def read_file(self, entry: Entry) -> tuple[FileInfo, bytes]:
        """:meth:`file_info` and the blob's bytes, from one read of the object."""
        _kind, raw = self.repo.object_store.get_raw(entry.sha.encode())
        pointer = parse_pointer(raw) if stat.S_ISREG(entry.mode) else None
        return FileInfo(len(raw), pointer), raw

    def attributes(self, commit: Commit | None, name: str = ".gitattributes") -> bytes:
        """The root ``.gitattributes`` (or ``name``) of ``commit``, empty when there is none."""
        if commit is None:
            return b""
        entry = self.entry(commit, name)
        if entry is None or not stat.S_ISREG(entry.mode):
            return b""
        return self.blob(entry.sha)

    # Refs and history

    def branches(self) -> dict[str, str]:
        return self._refs("refs/heads/")

    def tags(self) -> dict[str, str]:
        """Tag name -> the commit it points at (annotated tags peeled)."""
        answer = {}
        for name, sha in self._refs("refs/tags/").items():
            commit = self._peel(sha.encode())
            if commit is not None:
                answer[name] = commit.id.decode()
        return answer

    def _refs(self, prefix: str) -> dict[str, str]:
        refs = self.repo.refs.as_dict(prefix.rstrip("/").encode())
        return {name.decode(): sha.decode() for name, sha in sorted(refs.items())}

    def history(self, commit: Commit, skip: int, limit: int) -> tuple[list[Commit], bool]:
        """Up to ``limit`` commits from ``commit`` back, after ``skip``; and whether more follow."""
        walker = self.repo.get_walker(include=[commit.id])
        found: list[Commit] = []
        for index, item in enumerate(walker):
            if index < skip:
                continue
            if len(found) == limit:
                return found, True
            found.append(item.commit)
        return found, False


class _Held:
    """One thread's few most recently used open repositories, by path."""

    def __init__(self) -> None:
        self.repos: OrderedDict[str, tuple[tuple, Repo]] = OrderedDict()

    def close(self) -> None:
        while self.repos:
            self.repos.popitem()[1][1].close()


class _ThreadRepos(threading.local):
    """Each thread's :class:`_Held`; all of them are closed when the process exits, so
    dulwich does not complain about packs still open at interpreter shutdown."""

    every: ClassVar[weakref.WeakSet[_Held]] = weakref.WeakSet()
    lock = threading.Lock()

    def __init__(self) -> None:
        self.held = _Held()
        with self.lock:
            self.every.add(self.held)

    def get(self, path: str) -> Repo:
        repos = self.held.repos
        key = _identity(path)
        held = repos.pop(path, None)
        if held is not None:
            if held[0] == key:
                repos[path] = held
                return held[1]
            held[1].close()
        repo = Repo(path, bare=True)
        repos[path] = (key, repo)
        while len(repos) > CACHED_REPOS_PER_THREAD:
            repos.popitem(last=False)[1][1].close()
        return repo

    @classmethod
    def close_all(cls) -> None:
        with cls.lock:
            for held in list(cls.every):
                held.close()


def _identity(path: str) -> tuple:
    """What must not change for an open repository to stay valid: the directory itself
    and the set of its pack files."""
    try:
        info = os.stat(path)
    except OSError:
        raise NotGitRepository(f"No git repository was found at {path}") from None
    try:
        packs = frozenset(os.listdir(os.path.join(path, "objects", "pack")))
    except OSError:
        packs = frozenset()  # no pack yet, or not a repository: opening it will tell
    return info.st_dev, info.st_ino, packs


_REPOS = _ThreadRepos()
atexit.register(_ThreadRepos.close_all)
