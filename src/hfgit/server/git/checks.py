"""Object checks for pushed packs, as ``git fsck`` does them, and the connectivity walk.

Commits, trees and tags are parsed strictly and checked in full; blobs by size only. Tree
entries named ``.git`` in any filesystem's spelling (HFS+, NTFS) are refused, as are
``.gitmodules`` that are symlinks or carry option-like URLs and paths. Every new tip
must then be connected: each object it reaches is in the pack or already in the
repository. Blobs over the size limit are named by path, for a pointer to Git LFS.
Blobs are scanned for strings that may be this server's tokens as they go by
(:mod:`hfgit.leaks`); the push asks the database about them once, at the end.
"""

from __future__ import annotations

import re
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from itertools import compress
from operator import itemgetter, not_

from dulwich.config import ConfigFile
from dulwich.errors import ObjectFormatException
from dulwich.object_format import ObjectFormat
from dulwich.objects import S_IFGITLINK, Blob, Commit, ShaFile, Tag, Tree, parse_tree

from ...leaks import LiveToken, candidate_tokens


class PackRejected(Exception):
    """The pack as a whole cannot be accepted; the message goes to ``unpack``."""


_DIR_MODE = 0o040000
_VALID_MODES = {_DIR_MODE, 0o100644, 0o100755, 0o120000, S_IFGITLINK, 0o100664}


#: Code points HFS+ ignores when it compares names (git's ``next_hfs_char``).
_HFS_IGNORED = dict.fromkeys(
    [*range(0x200C, 0x2010), *range(0x202A, 0x202F), *range(0x206A, 0x2070), 0xFEFF]
)


def _hfs_name(name: bytes) -> str:
    """The name as HFS+ compares it: ignorable code points dropped.

    Like git, a malformed UTF-8 sequence ends the name, so ``.git`` followed by one
    still counts as ``.git``.
    """
    try:
        text = name.decode("utf-8")
    except UnicodeDecodeError as error:
        text = name[: error.start].decode("utf-8")
    return text.translate(_HFS_IGNORED)


def _ntfs_short_names(word: bytes, prefix: bytes) -> bytes:
    """NTFS 8.3 names a file ``.<word>`` may get: ``gitmod~1``..``~4``, or the hashed
    fall-back (``prefix`` cut to 0-6 characters, ``~``, digits: 8 characters)."""
    hashed = (re.escape(prefix[:k]) + b"~[1-9][0-9]{%d}" % (6 - k) for k in range(7))
    return b"|".join([re.escape(word[:6]) + b"~[1-4]", *hashed])


# NTFS ignores trailing spaces and periods, and ``:`` starts an alternate data stream
# (``.git::$INDEX_ALLOCATION`` is the directory ``.git``); git's ``is_ntfs_dotgit`` and
# ``is_ntfs_dotgitmodules``. ASCII case-insensitive, as NTFS and git compare these.
_NTFS_DOTGIT = re.compile(rb"(?:\.git|git~1)[ .]*(?:[:\\].*)?", re.IGNORECASE | re.DOTALL)
_NTFS_DOTGITMODULES = re.compile(
    rb"(?:\.gitmodules|" + _ntfs_short_names(b"gitmodules", b"gi7eba") + rb")[ .]*(?::.*)?",
    re.IGNORECASE | re.DOTALL,
)
#: First bytes of every name the checks below can match (a name starting otherwise is
#: skipped cheaply): ``.``, ``g``/``G``, ``~`` and the UTF-8 lead bytes of the HFS+
#: ignorable code points.
_SUSPECT_FIRST = frozenset(b".gG~\xe2\xef")
_DOTS = frozenset({b".", b".."})
#: The fields of a parsed tree entry ``(name, mode, child)``.
_NAME, _MODE, _CHILD = itemgetter(0), itemgetter(1), itemgetter(2)
#: The object a link ``(child, name)`` of :attr:`PackGraph.links` points at.
_LINKED = itemgetter(0)


def _is_dotgit(name: bytes) -> bool:
    """``.git`` as any filesystem might read it (git's ``is_hfs_dotgit``/``is_ntfs_dotgit``)."""
    hfs = _hfs_name(name)
    return (hfs.isascii() and hfs.lower() == ".git") or bool(_NTFS_DOTGIT.fullmatch(name))


def _is_gitmodules(name: bytes) -> bool:
    """``.gitmodules`` as any filesystem might read it, 8.3 short names included."""
    hfs = _hfs_name(name)
    return (hfs.isascii() and hfs.lower() == ".gitmodules") or bool(
        _NTFS_DOTGITMODULES.fullmatch(name)
    )


def _show(name: bytes) -> str:
    """A tree entry name for a message: quoted, ASCII, invisible characters escaped."""
    return ascii(name.decode("utf-8", "backslashreplace"))


@dataclass
class PackGraph:
    """What the checks learned about the objects of one pack."""

    kinds: dict[bytes, int] = field(default_factory=dict)
    #: object -> (child, name in a tree or b"") for every object the pack holds.
    links: dict[bytes, list[tuple[bytes, bytes]]] = field(default_factory=dict)
    big_blobs: set[bytes] = field(default_factory=set)
    #: Token-shaped strings with a valid checksum -> the blobs of the pack holding them.
    token_candidates: dict[str, set[bytes]] = field(default_factory=dict)
    #: Blobs that hold a live token (filled by the push once the database has answered).
    leaked: dict[bytes, LiveToken] = field(default_factory=dict)


def check_tree(sha: bytes, raw: bytes, oid_length: int, gitmodules: dict[bytes, bytes]):
    """Check a tree like ``git fsck`` and return its ``(child, name)`` links.

    One strict parse does the work of dulwich's ``Tree.check`` (which parses the tree
    twice more) plus the checks git adds: ``.git`` in any spelling (HFS+, NTFS),
    ``.gitmodules`` (in any spelling) that is a symlink. ``.gitmodules`` blobs are
    collected in ``gitmodules``, with the entry name that makes them one.

    A push's trees hold thousands of entries, so the checks run over whole lists first;
    only a tree that fails one is walked entry by entry, for the message.
    """
    what = f"tree {sha.decode()}"
    try:
        entries = parse_tree(raw, oid_length, strict=True)
    except ValueError as error:  # ObjectFormatException is a ValueError too
        raise ObjectFormatException(f"{what}: {error}") from None
    names = list(map(_NAME, entries))
    modes = set(map(_MODE, entries))
    if (
        not modes <= _VALID_MODES
        or not all(names)
        or not _DOTS.isdisjoint(names)
        or b"/" in b"\0".join(names)
    ):
        _refuse_entry(what, entries, gitmodules)
    for name, mode, child in [entry for entry in entries if entry[0][0] in _SUSPECT_FIRST]:
        _check_suspect(what, name, mode, child, gitmodules)
    if len(set(names)) != len(names):
        raise ObjectFormatException(f"{what}: duplicate entries")
    keys = names
    if _DIR_MODE in modes:
        keys = [name + b"/" if mode == _DIR_MODE else name for name, mode, _ in entries]
    if keys != sorted(keys):
        raise ObjectFormatException(f"{what}: entries not sorted")
    if S_IFGITLINK in modes:
        # A submodule's commit lives in another repository: not a link.
        return [(child, name) for name, mode, child in entries if mode != S_IFGITLINK]
    return list(zip(map(_CHILD, entries), names, strict=True))


def _refuse_entry(what: str, entries, gitmodules: dict[bytes, bytes]) -> None:
    """Raise for the first bad entry, checking each in turn."""
    for name, mode, child in entries:
        if mode not in _VALID_MODES:
            raise ObjectFormatException(f"{what}: invalid mode {mode:06o}")
        if not name or name in _DOTS or b"/" in name:
            raise ObjectFormatException(f"{what}: invalid entry name {_show(name)}")
        if name[0] in _SUSPECT_FIRST:
            _check_suspect(what, name, mode, child, gitmodules)


def _check_suspect(
    what: str, name: bytes, mode: int, child: bytes, gitmodules: dict[bytes, bytes]
) -> None:
    if _is_dotgit(name):
        raise ObjectFormatException(f"{what}: entry {_show(name)} is .git on some filesystem")
    if _is_gitmodules(name):
        if mode == stat.S_IFLNK:
            raise ObjectFormatException(
                f"{what}: entry {_show(name)} is a .gitmodules that is a symlink"
            )
        gitmodules.setdefault(child, name)


def check_gitmodules(sha: bytes, data: bytes, name: bytes = b".gitmodules") -> None:
    """Refuse option-like submodule URLs and paths (CVE-2018-17456 and friends).

    ``name`` is the tree entry that makes the blob a ``.gitmodules``, for the message.
    """
    what = f".gitmodules blob {sha.decode()} (entry {_show(name)})"
    try:
        config = ConfigFile.from_file(_BytesReader(data))
    except Exception:
        raise ObjectFormatException(f"{what}: unparsable") from None
    for section in config.sections():
        if not section or section[0] != b"submodule":
            continue
        submodule = section[1] if len(section) > 1 else b""
        if b".." in submodule.replace(b"\\", b"/").split(b"/"):
            raise ObjectFormatException(f"{what}: invalid submodule name {_show(submodule)}")
        for key in (b"url", b"path"):
            try:
                value = config.get(section, key)
            except KeyError:
                continue
            if value.lstrip().startswith(b"-") or b"\n" in value:
                raise ObjectFormatException(
                    f"{what}: submodule {_show(submodule)} has an option-like {key.decode()}"
                )


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self._lines = data.splitlines(keepends=True)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._lines)

    def readlines(self) -> list[bytes]:
        return self._lines


class PackChecker:
    """Checks each object of a pack as the indexer inflates it.

    Commits, trees and tags are parsed and checked in full; blobs only by size, so
    their content is never kept or parsed. ``.gitmodules`` blobs are known by the tree
    entries that name them, which may come after the blob in the pack: :meth:`finish`
    reads those few back from the finished pack.
    """

    def __init__(
        self, object_format: ObjectFormat, max_blob_bytes: int, scan_tokens: bool = False
    ) -> None:
        self.object_format = object_format
        self.max_blob_bytes = max_blob_bytes
        #: Whether blobs are scanned for token candidates (push protection is on).
        self.scan_tokens = scan_tokens
        self.graph = PackGraph()
        #: ``.gitmodules`` blob -> the tree entry name that makes it one.
        self.gitmodules: dict[bytes, bytes] = {}

    def add(self, sha: bytes, type_num: int, chunks: list[bytes]) -> None:
        """Check one object; raise :class:`PackRejected` if it is malformed."""
        try:
            self._add(sha, type_num, chunks)
        except (ObjectFormatException, ValueError, KeyError, AssertionError) as error:
            raise PackRejected(f"bad object: {error}") from None

    def add_blob(self, sha: bytes, size: int, token_candidates: set[str]) -> None:
        """Check a blob known by its size and the token candidates a scan of it found
        (:class:`hfgit.leaks.TokenScanner`): hashed as a stream, its content not kept."""
        graph = self.graph
        graph.kinds[sha] = Blob.type_num
        if size > self.max_blob_bytes:
            graph.big_blobs.add(sha)
        for candidate in token_candidates:
            graph.token_candidates.setdefault(candidate, set()).add(sha)

    def _add(self, sha: bytes, type_num: int, chunks: list[bytes]) -> None:
        graph = self.graph
        if type_num == Blob.type_num:
            found = candidate_tokens(chunks) if self.scan_tokens else set()
            self.add_blob(sha, sum(map(len, chunks)), found)
            return
        graph.kinds[sha] = type_num
        if type_num == Tree.type_num:
            raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            graph.links[sha] = check_tree(sha, raw, self.object_format.oid_length, self.gitmodules)
        else:
            obj = ShaFile.from_raw_chunks(type_num, chunks, sha, object_format=self.object_format)
            obj.check()
            if isinstance(obj, Commit):
                graph.links[sha] = [(obj.tree, b"")] + [(parent, b"") for parent in obj.parents]
            elif isinstance(obj, Tag):
                graph.links[sha] = [(obj.object[1], b"")]

    def finish(self, get_raw: Callable[[bytes], tuple[int, bytes]]) -> PackGraph:
        """Check the ``.gitmodules`` blobs of the pack; return what was learned.

        Those over the blob limit are left to the walk, which refuses them by path.
        ``.gitmodules`` already in the repository got there through this check.
        """
        graph = self.graph
        for sha, name in self.gitmodules.items():
            if graph.kinds.get(sha) == Blob.type_num and sha not in graph.big_blobs:
                try:
                    check_gitmodules(sha, get_raw(sha)[1], name)
                except ObjectFormatException as error:
                    raise PackRejected(f"bad object: {error}") from None
        return graph


@dataclass
class TipReport:
    missing: bytes | None = None
    big_files: list[str] = field(default_factory=list)
    #: (commit, path, blob) of each file that holds a live token.
    leaks: list[tuple[bytes, str, bytes]] = field(default_factory=list)


def _spell(where: tuple | None) -> str:
    """The path ``(parent's, name)`` stands for, as ``a/b/c``."""
    names: list[str] = []
    while where is not None:
        where, name = where
        names.append(name.decode("utf-8", "replace"))
    return "/".join(reversed(names))


def walk_tip(tip: bytes, graph: PackGraph, in_repo: Callable[[bytes], bool]) -> TipReport:
    """Everything reachable from ``tip`` is in the pack or in the repository.

    Objects already in the repository are taken as complete: they only ever got there
    through this same check. Paths are kept for blobs, to name files too large, and
    so is the commit whose tree reached them, to name files that leak a token. Parents
    are walked before trees, so a file is named in the oldest commit of the pack that
    has it.
    """
    report = TipReport()
    seen: set[bytes] = set()
    # A path is kept as (parent's, name) and spelt out only for a file reported: most
    # of a push's tree entries are files nobody names.
    pending: list[tuple[bytes, tuple | None, bytes]] = [(tip, None, tip)]
    while pending:
        sha, where, commit = pending.pop()
        if sha in seen:
            continue
        seen.add(sha)
        if sha in graph.kinds:
            kind = graph.kinds[sha]
            if sha in graph.big_blobs:
                report.big_files.append(_spell(where))
            if sha in graph.leaked:
                report.leaks.append((commit, _spell(where), sha))
            if kind == Commit.type_num:
                commit = sha
            links = graph.links.get(sha, ())
            # Most entries of a push's trees are files every other tree of the push
            # holds too: the ones already walked are dropped in C, before any tuple.
            fresh = compress(links, map(not_, map(seen.__contains__, map(_LINKED, links))))
            if kind == Tree.type_num:
                pending.extend((child, (where, name), commit) for child, name in fresh)
            else:
                pending.extend((child, where, commit) for child, _ in fresh)
        elif not in_repo(sha):
            report.missing = sha
            return report
    return report
