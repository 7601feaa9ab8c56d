"""Ref updates are compare-and-swap, and report-status says what really happened."""

from __future__ import annotations

from _wire import ZERO, PushTarget, report_status, snapshot


def _next_commit(target, scratch, text: bytes) -> tuple[str, list[str]]:
    return scratch.commit_files({"f.txt": text}, (target.main,))


def test_update_with_a_stale_old_value_gets_fetch_first(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    first, first_objects = _next_commit(target, scratch, b"first\n")
    second, second_objects = _next_commit(target, scratch, b"second\n")
    assert (
        report_status(
            target.push([(target.main, first, "refs/heads/main")], scratch.pack(first_objects)).body
        )["refs/heads/main"]
        == "ok"
    )

    # Same old value again: the ref has moved meanwhile, so this must not say ok.
    answer = target.push([(target.main, second, "refs/heads/main")], scratch.pack(second_objects))

    assert report_status(answer.body)["refs/heads/main"] == "ng fetch first"
    assert target.refs()["refs/heads/main"] == first


def test_create_of_an_existing_ref_gets_ng(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    commit, objects = _next_commit(target, scratch, b"x\n")

    answer = target.push([(ZERO, commit, "refs/heads/main")], scratch.pack(objects))

    assert report_status(answer.body)["refs/heads/main"].startswith("ng ")
    assert target.refs()["refs/heads/main"] == target.main


def test_delete_with_a_stale_old_value_gets_ng(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    commit, objects = _next_commit(target, scratch, b"x\n")
    target.push([(ZERO, commit, "refs/heads/topic")], scratch.pack(objects))
    before = snapshot(target.path)

    answer = target.push([(target.main, ZERO, "refs/heads/topic")], b"")

    assert report_status(answer.body)["refs/heads/topic"].startswith("ng ")
    assert snapshot(target.path) == before

    answer = target.push([(commit, ZERO, "refs/heads/topic")], b"")
    assert report_status(answer.body)["refs/heads/topic"] == "ok"
    assert "refs/heads/topic" not in target.refs()


def test_mixed_push_reports_each_ref_truthfully(hub, git, tmp_path):
    target = PushTarget.create(hub, git, tmp_path)
    scratch = target.plumbing(git, tmp_path)
    commit, objects = _next_commit(target, scratch, b"x\n")
    stale = "1" * 40

    answer = target.push(
        [(target.main, commit, "refs/heads/main"), (stale, commit, "refs/heads/other")],
        scratch.pack(objects),
    )

    status = report_status(answer.body)
    assert status["refs/heads/main"] == "ok"
    assert status["refs/heads/other"].startswith("ng ")
    refs = target.refs()
    assert refs["refs/heads/main"] == commit
    assert "refs/heads/other" not in refs
