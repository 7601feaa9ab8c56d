"""``atomic`` pushes update every ref or none; concurrent pushes never both win."""

from __future__ import annotations

import threading

from _wire import ZERO, PushTarget, report_status, snapshot
from hubtest import unique

ATOMIC_CAPS = "report-status atomic side-band-64k ofs-delta agent=crafted"


def test_atomic_push_with_one_bad_ref_changes_nothing(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    blob = scratch.blob(b"good\n")
    tree = scratch.tree([("100644", blob, "good.txt")])
    good = scratch.commit(tree, (target.main,))
    missing = scratch.commit(scratch.tree([]), (target.main,), message="never sent")
    before = snapshot(target.path)

    answer = target.push(
        [(target.main, good, "refs/heads/main"), (ZERO, missing, "refs/heads/broken")],
        scratch.pack([good, tree, blob]),
        caps=ATOMIC_CAPS,
    )

    status = report_status(answer.body)
    assert status["refs/heads/main"] == "ng atomic push failed"
    assert status["refs/heads/broken"] == "ng missing necessary objects"
    assert snapshot(target.path) == before


def test_atomic_push_with_one_stale_ref_changes_nothing(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    blob = scratch.blob(b"good\n")
    tree = scratch.tree([("100644", blob, "good.txt")])
    good = scratch.commit(tree, (target.main,))
    before = snapshot(target.path)

    answer = target.push(
        [(target.main, good, "refs/heads/main"), ("2" * 40, good, "refs/heads/side")],
        scratch.pack([good, tree, blob]),
        caps=ATOMIC_CAPS,
    )

    status = report_status(answer.body)
    assert status["refs/heads/main"] == "ng atomic push failed"
    assert status["refs/heads/side"].startswith("ng ")
    assert snapshot(target.path) == before


def test_real_git_atomic_push_lands_all_refs(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    work = tmp_path / "work"
    git.run("clone", "-q", target.url, str(work), token=target.token)
    git.commit(work, {"a.txt": "a\n"})
    git.run("branch", "side", cwd=work)
    git.run("push", "-q", "--atomic", "origin", "main", "side", cwd=work, token=target.token)
    head = git.run("rev-parse", "HEAD", cwd=work).stdout.strip()
    refs = target.refs()
    assert refs["refs/heads/main"] == refs["refs/heads/side"] == head


def test_concurrent_pushes_to_one_ref_exactly_one_wins(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    clones = []
    for index in range(2):
        path = tmp_path / f"clone{index}"
        git.run("clone", "-q", target.url, str(path), token=target.token)
        clones.append(path)
    expected = target.main
    for round_number in range(6):
        tips = [
            git.commit(path, {f"f{i}.txt": unique()}, f"r{round_number}")
            for i, path in enumerate(clones)
        ]
        results: list = [None, None]

        def push(index: int, results: list = results) -> None:
            results[index] = git.run(
                "push", "origin", "main", cwd=clones[index], token=target.token, check=False
            )

        threads = [threading.Thread(target=push, args=(i,)) for i in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        winners = [i for i, result in enumerate(results) if result.returncode == 0]
        assert len(winners) == 1, [r.stderr for r in results]
        loser = 1 - winners[0]
        assert "rejected" in results[loser].stderr
        server_main = target.refs()["refs/heads/main"]
        assert server_main == tips[winners[0]]
        parent = git.run("rev-parse", "HEAD^", cwd=clones[winners[0]]).stdout.strip()
        assert parent == expected
        expected = server_main
        for path in clones:
            git.run("fetch", "-q", "origin", cwd=path, token=target.token)
            git.run("reset", "-q", "--hard", "origin/main", cwd=path)
    git.run("--git-dir", str(target.path), "fsck", "--strict")
