"""Is every wanted object a current tip, or reachable from one?

The common case, a want that is a tip, costs a dict lookup. Anything else (a tip that
moved since the advertisement, a partial clone's lazy fetch of one blob) is looked for
in one walk from the current tips that stops as soon as every want is found: ``git
rev-list --objects`` when a git binary is available (C speed, commits first, then trees
and blobs), else a dulwich walk. The walk is bounded by the repository's size and by
:data:`WALK_SECONDS`; a want still missing then is refused as git refuses it.
"""

from __future__ import annotations

import re
import stat
import time
from collections.abc import Iterable

from dulwich.objects import S_IFGITLINK, Commit, Tag, Tree
from dulwich.repo import Repo

from .gitproc import GitBinary
from .wants import FetchRefused

#: Longest a reachability walk may take before the fetch is refused.
WALK_SECONDS = 60
_SHA = re.compile(rb"[0-9a-f]{40}")


def check_wants(repo: Repo, wants: Iterable[bytes], git: GitBinary | None) -> None:
    """Refuse the request unless every want is a tip or reachable from one."""
    refs = repo.get_refs()
    tips = set(refs.values())
    rest = set(wants) - tips
    if not rest:
        return
    absent = [sha for sha in rest if sha not in repo.object_store]
    if absent:  # no walk can find it: refused at the price of an index lookup
        raise FetchRefused(f"upload-pack: not our ref {min(absent).decode('ascii')}")
    for name in refs:
        if name.startswith(b"refs/tags/"):
            rest.discard(repo.get_peeled(name))
    if rest:
        deadline = time.monotonic() + WALK_SECONDS
        if git is not None:
            _walk_with_git(git, repo.path, tips, rest, deadline)
        else:
            _walk_with_dulwich(repo, tips, rest, deadline)
    if rest:
        raise FetchRefused(f"upload-pack: not our ref {min(rest).decode('ascii')}")


def _walk_with_git(
    git: GitBinary, path: str, tips: set[bytes], rest: set[bytes], deadline: float
) -> None:
    """Discard from ``rest`` what ``git rev-list --objects`` reaches from ``tips``."""
    listing = b"".join(tip + b"\n" for tip in tips if _SHA.fullmatch(tip))
    process = git.spawn(
        (),
        f"--git-dir={path}",
        "rev-list",
        "--objects",
        "--no-object-names",
        "--stdin",
        input=listing,
    )
    try:
        pending = b""
        for chunk in process.chunks():
            lines = (pending + chunk).split(b"\n")
            pending = lines.pop()
            rest.difference_update(lines)
            if not rest:
                return
            _check_deadline(deadline)
    finally:
        process.close()


def _walk_with_dulwich(repo: Repo, tips: set[bytes], rest: set[bytes], deadline: float) -> None:
    """The same walk in Python, for a host without git: commits first (the common
    non-tip want is a tip that moved), then their trees. Blobs are never read: tree
    entries' modes say what they are."""
    store = repo.object_store
    seen: set[bytes] = set()
    trees: list[bytes] = []
    pending = list(tips)
    while pending and rest:
        sha = pending.pop()
        if sha in seen:
            continue
        seen.add(sha)
        rest.discard(sha)
        _check_deadline(deadline)
        obj = store[sha]
        if isinstance(obj, Commit):
            pending.extend(obj.parents)
            trees.append(obj.tree)
        elif isinstance(obj, Tag):
            pending.append(obj.object[1])
        elif isinstance(obj, Tree):
            trees.append(sha)
    trees.reverse()  # the newest commits' trees first, each walked depth first
    walked: set[bytes] = set()
    while trees and rest:
        sha = trees.pop()
        if sha in walked:
            continue
        walked.add(sha)
        rest.discard(sha)
        _check_deadline(deadline)
        for entry in store[sha].iteritems():
            if stat.S_ISDIR(entry.mode):
                trees.append(entry.sha)
            elif entry.mode != S_IFGITLINK:  # a submodule's commit is not ours
                rest.discard(entry.sha)


def _check_deadline(deadline: float) -> None:
    if time.monotonic() > deadline:
        raise FetchRefused("upload-pack: the wanted objects took too long to find")
