"""Objects are checked like ``git fsck`` would before anything lands."""

from __future__ import annotations

from hashlib import sha1
from io import BytesIO

import pytest
from dulwich.pack import OFS_DELTA, REF_DELTA, PackStreamReader

from _wire import Plumbing, PushTarget, report_status, snapshot


def push_directory_named(hub, git, tmp_path, name: str) -> tuple[PushTarget, dict, dict]:
    """Push a commit whose tree holds a directory ``name`` with a hostile git config in it;
    returns the target, its snapshot before the push and the report-status."""
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    blob = scratch.blob(b"[core]\n\thooksPath = /tmp\n")
    inner = scratch.tree([("100644", blob, "config")])
    tree = scratch.tree([("40000", inner, name)])
    commit = scratch.commit(tree, (target.main,))
    before = snapshot(target.path)
    answer = target.push(
        [(target.main, commit, "refs/heads/main")], scratch.pack([commit, tree, inner, blob])
    )
    return target, before, report_status(answer.body)


@pytest.mark.parametrize("name", [".git", ".GIT", "git~1", ".git.", "..", "."])
def test_tree_with_a_forbidden_entry_name_is_refused(hub, git, tmp_path, name):
    target, before, status = push_directory_named(hub, git, tmp_path, name)
    assert status["unpack"].startswith("bad object")
    reason = "invalid entry name" if name in (".", "..") else "is .git"
    assert f"{name!a} {reason}" in status["unpack"] or (f"{reason} {name!a}" in status["unpack"])
    assert status["refs/heads/main"] == "ng unpacker error"
    assert snapshot(target.path) == before


def test_tree_entry_with_a_slash_is_refused(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    blob = scratch.blob(b"x\n")
    tree = scratch.tree([("100644", blob, "a/b")])
    commit = scratch.commit(tree, (target.main,))
    before = snapshot(target.path)

    answer = target.push(
        [(target.main, commit, "refs/heads/main")], scratch.pack([commit, tree, blob])
    )

    assert report_status(answer.body)["unpack"].startswith("bad object")
    assert snapshot(target.path) == before


def test_malformed_commit_is_refused(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    bogus = scratch.literal("commit", b"tree not-a-sha\nauthor nobody\n\nmessage\n")
    before = snapshot(target.path)

    answer = target.push([(target.main, bogus, "refs/heads/main")], scratch.pack([bogus]))

    status = report_status(answer.body)
    assert status["unpack"] != "ok"
    assert status["refs/heads/main"] == "ng unpacker error"
    assert snapshot(target.path) == before
    assert target.refs()["refs/heads/main"] == target.main


@pytest.mark.parametrize(
    "gitmodules",
    [
        b'[submodule "x"]\n\tpath = x\n\turl = --upload-pack=touch /tmp/pwned\n',
        b'[submodule "x"]\n\tpath = -x\n\turl = https://example.com/x\n',
        b'[submodule "../../hooks"]\n\tpath = y\n\turl = https://example.com/y\n',
    ],
)
def test_gitmodules_with_option_like_values_is_refused(hub, git, tmp_path, gitmodules):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    blob = scratch.blob(gitmodules)
    tree = scratch.tree([("100644", blob, ".gitmodules")])
    commit = scratch.commit(tree, (target.main,))
    before = snapshot(target.path)

    answer = target.push(
        [(target.main, commit, "refs/heads/main")], scratch.pack([commit, tree, blob])
    )

    assert ".gitmodules" in report_status(answer.body)["unpack"]
    assert snapshot(target.path) == before


def test_ordinary_gitmodules_is_accepted(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    blob = scratch.blob(b'[submodule "lib"]\n\tpath = lib\n\turl = https://example.com/lib\n')
    tree = scratch.tree([("100644", blob, ".gitmodules")])
    commit = scratch.commit(tree, (target.main,))

    answer = target.push(
        [(target.main, commit, "refs/heads/main")], scratch.pack([commit, tree, blob])
    )

    assert report_status(answer.body) == {"unpack": "ok", "refs/heads/main": "ok"}


def test_branch_cannot_point_at_a_blob(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    blob = scratch.blob(b"just a blob\n")

    answer = target.push([(target.main, blob, "refs/heads/main")], scratch.pack([blob]))

    assert report_status(answer.body)["refs/heads/main"].startswith("ng cannot point a branch")
    assert target.refs()["refs/heads/main"] == target.main


# --- deltas: each object is checked as what it resolves to, bases in the pack or not ---


def land(target: PushTarget, scratch: Plumbing, files: dict[str, bytes]) -> str:
    """Push a commit with ``files`` on top of ``main`` (a full pack); return it."""
    commit, objects = scratch.commit_files(files, (target.main,))
    answer = target.push([(target.main, commit, "refs/heads/main")], scratch.pack(objects))
    assert report_status(answer.body) == {"unpack": "ok", "refs/heads/main": "ok"}
    scratch.run("update-ref", "refs/heads/main", commit)
    target.main = commit
    return commit


def thin_pack(scratch: Plumbing, tip: str, base: str) -> bytes:
    """What ``git push`` sends: objects of ``tip`` not in ``base``, deltas against it."""
    return scratch.run(
        "pack-objects", "--thin", "--stdout", "--revs", input=f"{tip}\n^{base}\n".encode()
    )


def pack_types(pack: bytes) -> set[int]:
    """The entry types in a pack as stored (deltas not resolved)."""
    reader = PackStreamReader(sha1, BytesIO(pack).read)
    return {unpacked.pack_type_num for unpacked in reader.read_objects()}


def lines(count: int, word: str = "line") -> bytes:
    return "".join(
        f"{word} {index} of a file that deltas well\n" for index in range(count)
    ).encode()


GOOD_GITMODULES = b"".join(
    f'[submodule "lib{index}"]\n\tpath = lib{index}\n\turl = https://example.com/lib{index}\n'.encode()
    for index in range(30)
)
EVIL_SECTION = b'[submodule "evil"]\n\tpath = evil\n\turl = --upload-pack=touch /tmp/pwned\n'


def test_thin_pack_with_bases_in_the_repository_is_accepted(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    base = land(target, scratch, {"data.txt": lines(100)})
    changed = lines(100) + b"one more line\n"
    tree = scratch.tree([("100644", scratch.blob(changed), "data.txt")])
    commit = scratch.commit(tree, (base,))
    pack = thin_pack(scratch, commit, base)
    assert REF_DELTA in pack_types(pack)  # the new blob is a delta against the repository's

    answer = target.push([(base, commit, "refs/heads/main")], pack)

    assert report_status(answer.body) == {"unpack": "ok", "refs/heads/main": "ok"}
    clone = tmp_path / "clone"
    git.run("clone", "-q", target.url, str(clone), token=target.token)
    assert (clone / "data.txt").read_bytes() == changed
    git.run("fsck", "--strict", cwd=clone)


def test_thin_pack_with_a_base_nobody_has_is_refused(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    unsent = scratch.commit(
        scratch.tree([("100644", scratch.blob(lines(100)), "data.txt")]), (target.main,)
    )
    tree = scratch.tree([("100644", scratch.blob(lines(100) + b"more\n"), "data.txt")])
    commit = scratch.commit(tree, (unsent,))
    pack = thin_pack(scratch, commit, unsent)
    assert REF_DELTA in pack_types(pack)
    before = snapshot(target.path)

    answer = target.push([(target.main, commit, "refs/heads/main")], pack)

    status = report_status(answer.body)
    assert status["unpack"].startswith("unpack failed")
    assert status["refs/heads/main"] == "ng unpacker error"
    assert snapshot(target.path) == before
    land(target, scratch, {"after.txt": b"the server still takes pushes\n"})


def test_gitmodules_stored_as_a_delta_against_the_repository_is_checked(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    base = land(target, scratch, {".gitmodules": GOOD_GITMODULES})
    tree = scratch.tree([("100644", scratch.blob(GOOD_GITMODULES + EVIL_SECTION), ".gitmodules")])
    commit = scratch.commit(tree, (base,))
    pack = thin_pack(scratch, commit, base)
    assert REF_DELTA in pack_types(pack)
    before = snapshot(target.path)

    answer = target.push([(base, commit, "refs/heads/main")], pack)

    assert ".gitmodules" in report_status(answer.body)["unpack"]
    assert snapshot(target.path) == before


def test_gitmodules_stored_as_a_delta_inside_the_pack_is_checked(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    evil = GOOD_GITMODULES + EVIL_SECTION
    # git deltas the smaller object against the larger: the .gitmodules becomes the delta.
    base = scratch.blob(evil + b"# and a long comment\n" * 40)
    gitmodules = scratch.blob(evil)
    tree = scratch.tree([("100644", gitmodules, ".gitmodules"), ("100644", base, "notes.txt")])
    commit = scratch.commit(tree, (target.main,))
    listing = "".join(f"{sha}\n" for sha in (commit, tree, base, gitmodules)).encode()
    pack = scratch.run("pack-objects", "--stdout", "--delta-base-offset", input=listing)
    assert OFS_DELTA in pack_types(pack)
    before = snapshot(target.path)

    answer = target.push([(target.main, commit, "refs/heads/main")], pack)

    assert ".gitmodules" in report_status(answer.body)["unpack"]
    assert snapshot(target.path) == before


def test_large_gitmodules_is_checked_too(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    blob = scratch.blob(b"# a long preamble\n" * 5000 + EVIL_SECTION)  # about 90 KB
    tree = scratch.tree([("100644", blob, ".gitmodules")])
    commit = scratch.commit(tree, (target.main,))
    before = snapshot(target.path)

    answer = target.push(
        [(target.main, commit, "refs/heads/main")], scratch.pack([commit, tree, blob])
    )

    assert ".gitmodules" in report_status(answer.body)["unpack"]
    assert snapshot(target.path) == before


# --- .git and .gitmodules as HFS+ and NTFS read them (git's is_hfs_* / is_ntfs_*) ----

DOTGIT_SPELLINGS = [
    ".git\u200c",  # HFS+ ignores zero-width and direction code points anywhere
    "\u200d.git",
    ".g\u200eit",
    ".gi\u200ft",
    ".\u202agit",
    ".GIT\u202e",
    ".git\u206a",
    ".gi\u206ft",
    "\ufeff.git",
    ".git::$INDEX_ALLOCATION",  # NTFS: the directory .git through its index stream
    ".git:stream",
    ".git ",  # NTFS drops trailing spaces and periods
    ".git. .",
    "GIT~1",  # NTFS 8.3 short name
    "git~1 .",
    ".git\\hooks",  # a backslash separates path components on Windows
]
GITMODULES_SPELLINGS = [
    "gitmod~1",
    "GITMOD~4",
    "gi7eba~1",  # NTFS's hashed fall-back short name
    "gi7eb~12",
    ".GitModules",
    ".gitmodules. ",
    ".gitmodules::$DATA",
    ".git\u200cmodules",
    "\ufeff.gitmodules",
]


@pytest.mark.parametrize("name", DOTGIT_SPELLINGS, ids=ascii)
def test_dotgit_in_other_filesystems_spellings_is_refused(hub, git, tmp_path, name):
    target, before, status = push_directory_named(hub, git, tmp_path, name)
    assert status["unpack"].startswith("bad object")
    assert f"entry {name!a} is .git" in status["unpack"]
    assert status["refs/heads/main"] == "ng unpacker error"
    assert snapshot(target.path) == before


@pytest.mark.parametrize("name", GITMODULES_SPELLINGS, ids=ascii)
def test_gitmodules_in_other_filesystems_spellings_is_checked(hub, git, tmp_path, name):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    blob = scratch.blob(EVIL_SECTION)
    tree = scratch.tree([("100644", blob, name)])
    commit = scratch.commit(tree, (target.main,))
    before = snapshot(target.path)

    answer = target.push(
        [(target.main, commit, "refs/heads/main")], scratch.pack([commit, tree, blob])
    )

    status = report_status(answer.body)
    assert f".gitmodules blob {blob} (entry {name!a})" in status["unpack"]
    assert "option-like url" in status["unpack"]
    assert snapshot(target.path) == before


@pytest.mark.parametrize("name", [".gitmodules", "gitmod~1", ".git\u200dmodules"], ids=ascii)
def test_gitmodules_symlink_is_refused_in_any_spelling(hub, git, tmp_path, name):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    link = scratch.blob(b"/etc/passwd")
    tree = scratch.tree([("120000", link, name)])
    commit = scratch.commit(tree, (target.main,))
    before = snapshot(target.path)

    answer = target.push(
        [(target.main, commit, "refs/heads/main")], scratch.pack([commit, tree, link])
    )

    status = report_status(answer.body)
    assert f"entry {name!a} is a .gitmodules that is a symlink" in status["unpack"]
    assert snapshot(target.path) == before


def test_names_that_only_resemble_git_ones_are_accepted(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    names = [".gitignore", ".git-blame-ignore-revs", "git~2", ".git~1", "git", ".gi\u00e9t"]
    names += ["gitmod~5", "gi7eba~0", "gi7eb~1", ".gitmodules.bak", "~readme", "\u200cnotes"]
    blob = scratch.blob(b"fine\n")
    tree = scratch.tree([("100644", blob, name) for name in names])
    commit = scratch.commit(tree, (target.main,))

    answer = target.push(
        [(target.main, commit, "refs/heads/main")], scratch.pack([commit, tree, blob])
    )

    assert report_status(answer.body) == {"unpack": "ok", "refs/heads/main": "ok"}
    clone = tmp_path / "clone"
    git.run("clone", "-q", target.url, str(clone), token=target.token)
    assert sorted(path.name for path in clone.iterdir() if path.name != ".git") == sorted(names)
