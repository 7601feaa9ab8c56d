"""Uploads through the Hub's file API with the real huggingface_hub: preupload, LFS,
the NDJSON commit, branches and tags; each commit a git commit git clones see."""

from __future__ import annotations

import base64
import hashlib
import json
import os
from pathlib import Path

import pytest
from huggingface_hub import (
    CommitOperationAdd,
    HfApi,
    hf_hub_download,
)
from huggingface_hub.errors import (
    BadRequestError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from filesupport import new_repo, raw_request, seed
from hubtest import Git, Hub
from lfs_support import held

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def owner(hub: Hub) -> str:
    return hub.make_user()


def _api(hub: Hub, token: str) -> HfApi:
    return HfApi(endpoint=hub.url, token=token)


def _ndjson(header: dict, *lines: tuple[str, dict]) -> bytes:
    items = [{"key": "header", "value": header}] + [{"key": k, "value": v} for k, v in lines]
    return b"".join(json.dumps(item).encode() + b"\n" for item in items)


def _commit_raw(hub: Hub, repo, token: str, body: bytes, rev: str = "main"):
    return raw_request(
        hub,
        "POST",
        f"/api/{repo.type}s/{repo.repo_id}/commit/{rev}",
        token=token,
        body=body,
        headers={"Content-Type": "application/x-ndjson"},
    )


def test_upload_file_into_an_empty_repo_creates_main(
    hub: Hub, owner: str, git: Git, tmp_path: Path, hf_home: Path
) -> None:
    repo = new_repo(hub, owner)
    token = hub.make_token(owner, "write")
    api = _api(hub, token)
    info = api.upload_file(
        path_or_fileobj=b"hello\n", path_in_repo="hello.txt", repo_id=repo.repo_id
    )
    assert info.oid == api.model_info(repo.repo_id).sha
    assert info.commit_url == f"{hub.url}/{repo.repo_id}/commit/{info.oid}"
    clone = tmp_path / "clone"
    git.run("clone", "-q", hub.repo_url(repo), str(clone), token=token)
    assert (clone / "hello.txt").read_text() == "hello\n"
    log = git.run("log", "--format=%an|%s", cwd=clone).stdout.strip()
    assert log == f"{owner}|Upload hello.txt with huggingface_hub"


def test_upload_folder_with_a_large_file_goes_lfs(
    hub: Hub, owner: str, lfs_git: Git, tmp_path: Path, hf_home: Path
) -> None:
    repo = new_repo(hub, owner)
    token = hub.make_token(owner, "write")
    folder = tmp_path / "folder"
    (folder / "sub").mkdir(parents=True)
    big = os.urandom(12 * MiB)
    (folder / "weights.bin").write_bytes(big)
    (folder / "README.md").write_text("---\nlicense: mit\n---\n# model\n")
    (folder / "sub" / "config.json").write_text('{"a": 1}\n')
    api = _api(hub, token)
    api.upload_folder(folder_path=folder, repo_id=repo.repo_id)
    oid = hashlib.sha256(big).hexdigest()
    assert held(hub, repo, oid)
    tree = {e.path: e for e in api.list_repo_tree(repo.repo_id, recursive=True)}
    assert tree["weights.bin"].lfs.sha256 == oid and tree["weights.bin"].size == len(big)
    assert tree["sub/config.json"].lfs is None
    path = hf_hub_download(repo.repo_id, "weights.bin", endpoint=hub.url, token=token)
    assert hashlib.sha256(Path(path).read_bytes()).hexdigest() == oid

    # git + git-lfs see the object: the Hub's tracking line was added for it.
    clone = tmp_path / "clone"
    lfs_git.run("clone", "-q", hub.repo_url(repo), str(clone), token=token)
    assert "weights.bin filter=lfs" in (clone / ".gitattributes").read_text()
    assert hashlib.sha256((clone / "weights.bin").read_bytes()).hexdigest() == oid
    assert (clone / "sub" / "config.json").read_text() == '{"a": 1}\n'


def test_stale_parent_commit_is_refused_and_changes_nothing(
    hub: Hub, owner: str, hf_home: Path
) -> None:
    repo = new_repo(hub, owner)
    api = _api(hub, hub.make_token(owner, "write"))
    first = api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=repo.repo_id).oid
    second = api.create_commit(
        repo.repo_id,
        [CommitOperationAdd("b.txt", b"2")],
        commit_message="two",
        parent_commit=first,
    ).oid
    with pytest.raises(HfHubHTTPError) as caught:
        api.create_commit(
            repo.repo_id,
            [CommitOperationAdd("c.txt", b"3")],
            commit_message="stale",
            parent_commit=first,
        )
    assert caught.value.response.status_code == 412
    assert api.model_info(repo.repo_id).sha == second
    assert "c.txt" not in api.list_repo_files(repo.repo_id)


def test_deletes_of_files_and_folders(hub: Hub, owner: str, hf_home: Path) -> None:
    repo = new_repo(hub, owner)
    api = _api(hub, hub.make_token(owner, "write"))
    api.create_commit(
        repo.repo_id,
        [
            CommitOperationAdd("keep.txt", b"k"),
            CommitOperationAdd("old/a.txt", b"a"),
            CommitOperationAdd("old/deep/b.txt", b"b"),
            CommitOperationAdd("gone.txt", b"g"),
        ],
        commit_message="files",
    )
    api.delete_file("gone.txt", repo.repo_id)
    api.delete_folder("old", repo.repo_id)
    assert api.list_repo_files(repo.repo_id) == ["keep.txt"]
    with pytest.raises(HfHubHTTPError) as caught:
        api.delete_file("never.txt", repo.repo_id)
    assert caught.value.response.status_code == 404


def test_branches_and_tags_with_slashes(hub: Hub, owner: str, hf_home: Path) -> None:
    repo = new_repo(hub, owner)
    api = _api(hub, hub.make_token(owner, "write"))
    base = api.upload_file(path_or_fileobj=b"m", path_in_repo="m.txt", repo_id=repo.repo_id).oid
    api.create_branch(repo.repo_id, branch="feat/y")
    api.create_branch(repo.repo_id, branch="feat/y", exist_ok=True)
    on_branch = api.upload_file(
        path_or_fileobj=b"f", path_in_repo="f.txt", repo_id=repo.repo_id, revision="feat/y"
    ).oid
    assert api.model_info(repo.repo_id, revision="feat/y").sha == on_branch
    assert api.model_info(repo.repo_id).sha == base
    path = hf_hub_download(
        repo.repo_id, "f.txt", revision="feat/y", endpoint=hub.url, token=api.token
    )
    assert Path(path).read_bytes() == b"f"
    api.create_branch(repo.repo_id, branch="from-old", revision=base)
    api.create_tag(repo.repo_id, tag="v1.0", revision="feat/y", tag_message="first")
    api.create_tag(repo.repo_id, tag="release/2")
    refs = api.list_repo_refs(repo.repo_id)
    assert {b.name: b.target_commit for b in refs.branches} == {
        "main": base,
        "feat/y": on_branch,
        "from-old": base,
    }
    assert {t.name: t.target_commit for t in refs.tags} == {"v1.0": on_branch, "release/2": base}
    with pytest.raises(HfHubHTTPError) as caught:
        api.create_tag(repo.repo_id, tag="v1.0")
    assert caught.value.response.status_code == 409
    api.delete_tag(repo.repo_id, tag="release/2")
    api.delete_branch(repo.repo_id, branch="feat/y")
    with pytest.raises(RevisionNotFoundError):
        api.model_info(repo.repo_id, revision="feat/y")
    with pytest.raises(RevisionNotFoundError):
        api.delete_tag(repo.repo_id, tag="release/2")
    with pytest.raises(HfHubHTTPError) as caught:
        api.delete_branch(repo.repo_id, branch="main")
    assert caught.value.response.status_code == 403
    with pytest.raises(RevisionNotFoundError):
        api.create_branch(repo.repo_id, branch="x", revision="nope")
    reader = _api(hub, hub.make_token(owner, "read"))
    with pytest.raises(HfHubHTTPError) as caught:
        reader.create_branch(repo.repo_id, branch="z")
    assert caught.value.response.status_code == 403
    stranger = _api(hub, hub.make_token(hub.make_user(), "write"))
    with pytest.raises(RepositoryNotFoundError):
        stranger.create_tag(repo.repo_id, tag="t")


def test_git_and_the_api_interleave_both_ways(
    hub: Hub, owner: str, git: Git, tmp_path: Path, hf_home: Path
) -> None:
    repo = new_repo(hub, owner)
    token = hub.make_token(owner, "write")
    work = tmp_path / "work"
    seed(hub, git, work, repo, token, {"a.txt": "git 1\n"})
    api = _api(hub, token)
    api.upload_file(path_or_fileobj=b"api 1\n", path_in_repo="b.txt", repo_id=repo.repo_id)
    git.run("pull", "-q", "--ff-only", hub.repo_url(repo), "main", cwd=work, token=token)
    assert (work / "b.txt").read_text() == "api 1\n"
    pushed = seed(hub, git, work, repo, token, {"c.txt": "git 2\n"})
    assert api.model_info(repo.repo_id).sha == pushed
    after = api.upload_file(
        path_or_fileobj=b"api 2\n", path_in_repo="d.txt", repo_id=repo.repo_id, parent_commit=pushed
    ).oid
    git.run("pull", "-q", "--ff-only", hub.repo_url(repo), "main", cwd=work, token=token)
    assert git.run("rev-parse", "HEAD", cwd=work).stdout.strip() == after
    assert sorted(api.list_repo_files(repo.repo_id)) == ["a.txt", "b.txt", "c.txt", "d.txt"]


def test_create_pr_is_refused_clearly(hub: Hub, owner: str, hf_home: Path) -> None:
    repo = new_repo(hub, owner)
    api = _api(hub, hub.make_token(owner, "write"))
    api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=repo.repo_id)
    with pytest.raises(BadRequestError) as caught:
        api.upload_file(
            path_or_fileobj=b"2", path_in_repo="b.txt", repo_id=repo.repo_id, create_pr=True
        )
    assert "pull requests" in str(caught.value)


def test_server_side_checks_refuse_and_change_nothing(hub: Hub, owner: str) -> None:
    repo = new_repo(hub, owner)
    token = hub.make_token(owner, "write")
    api = _api(hub, token)
    base = api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=repo.repo_id).oid

    def refused(*lines: tuple[str, dict], status: int = 422) -> bytes:
        got, headers, body = _commit_raw(hub, repo, token, _ndjson({"summary": "x"}, *lines))
        assert got == status, body
        assert headers["X-Error-Message"]
        assert api.model_info(repo.repo_id).sha == base
        return body

    def file(path: str, data: bytes = b"x") -> tuple[str, dict]:
        return (
            "file",
            {"path": path, "content": base64.b64encode(data).decode(), "encoding": "base64"},
        )

    for path in ("../x", "a/../b", "./a", "/abs", "a//b", "a\\b", "nul\x00"):
        refused(file(path))
    for path in (".git/config", ".GIT/config", "sub/.git/hooks", "git~1/x", ".git. /x"):
        assert b".git" in refused(file(path))
    modules = b'[submodule "x"]\n\tpath = x\n\turl = --upload-pack=touch /tmp/pwned\n'
    assert b"option-like" in refused(file(".gitmodules", modules))
    big = refused(file("big.bin", os.urandom(10 * MiB + 1)))
    assert b"Git LFS" in big and b"big.bin" in big
    oid = hashlib.sha256(b"never uploaded").hexdigest()
    assert b"batch" in refused(
        ("lfsFile", {"path": "w.bin", "oid": oid, "size": 14, "algo": "sha256"})
    )
    refused(("deletedFile", {"path": "missing.txt"}), status=404)
    refused(("nonsense", {"path": "a.txt"}), status=400)
    refused(("file", {"path": "a.txt", "content": "!!", "encoding": "base64"}), status=400)
    got, _, _ = _commit_raw(hub, repo, token, b"not json\n")
    assert got == 400
    got, _, _ = _commit_raw(hub, repo, token, _ndjson({"summary": ""}))
    assert got == 400
    got, _, _ = _commit_raw(hub, repo, token, _ndjson({"summary": "x"}, file("b")), rev="nope")
    assert got == 404
    got, _, _ = _commit_raw(
        hub, repo, token, _ndjson({"summary": "x"}, file("b")), rev="refs%2Fpr%2F1"
    )
    assert got == 400


def test_preupload_modes_gitignore_and_validate_yaml(
    hub: Hub, owner: str, tmp_path: Path, hf_home: Path
) -> None:
    repo = new_repo(hub, owner)
    token = hub.make_token(owner, "write")
    api = _api(hub, token)
    api.upload_file(
        path_or_fileobj=b"*.onnx filter=lfs diff=lfs merge=lfs -text\n",
        path_in_repo=".gitattributes",
        repo_id=repo.repo_id,
    )
    body = {
        "files": [
            {"path": "small.txt", "sample": "", "size": 10},
            {"path": "model.onnx", "sample": "", "size": 10},
            {"path": "huge.bin", "sample": "", "size": 11 * MiB},
            {"path": ".gitattributes", "sample": "", "size": 10},
        ]
    }
    status, _, raw = raw_request(
        hub,
        "POST",
        f"/api/models/{repo.repo_id}/preupload/main",
        token=token,
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    assert status == 200
    modes = {f["path"]: f for f in json.loads(raw)["files"]}
    assert modes["small.txt"]["uploadMode"] == "regular"
    assert modes["model.onnx"]["uploadMode"] == "lfs"
    assert modes["huge.bin"]["uploadMode"] == "lfs"
    assert modes[".gitattributes"]["oid"]  # unchanged files are recognised by the client
    assert all(f["shouldIgnore"] is False for f in modes.values())

    # .gitignore: the one being uploaded, else the branch's, says what the client skips.
    body["gitIgnore"] = "*.txt\n!keep.txt\n"
    body["files"].append({"path": "keep.txt", "sample": "", "size": 1})
    status, _, raw = raw_request(
        hub,
        "POST",
        f"/api/models/{repo.repo_id}/preupload/main",
        token=token,
        body=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    skipped = {f["path"] for f in json.loads(raw)["files"] if f["shouldIgnore"]}
    assert status == 200 and skipped == {"small.txt"}
    folder = tmp_path / "up"
    folder.mkdir()
    (folder / ".gitignore").write_text("*.log\n")
    (folder / "run.log").write_text("noise\n")
    (folder / "model.txt").write_text("weights\n")
    api.upload_folder(folder_path=folder, repo_id=repo.repo_id)
    files = set(api.list_repo_files(repo.repo_id))
    assert {".gitignore", "model.txt"} <= files and "run.log" not in files
    status, _, raw = raw_request(
        hub,
        "POST",
        "/api/validate-yaml",
        body=b'{"content": "x", "repoType": "model"}',
        headers={"Content-Type": "application/json"},
    )
    assert status == 200 and json.loads(raw) == {"errors": [], "warnings": []}


def test_xet_token_route_says_what_to_set(hub: Hub, owner: str) -> None:
    repo = new_repo(hub, owner)
    token = hub.make_token(owner, "write")
    status, headers, _ = raw_request(
        hub, "GET", f"/api/models/{repo.repo_id}/xet-write-token/main", token=token
    )
    assert 400 <= status < 500
    assert "HF_HUB_DISABLE_XET=1" in headers["X-Error-Message"]
    stranger = hub.make_token(hub.make_user(), "write")
    status, headers, _ = raw_request(
        hub, "GET", f"/api/models/{repo.repo_id}/xet-write-token/main", token=stranger
    )
    assert status == 404 and headers["X-Error-Code"] == "RepoNotFound"


def test_concurrent_commits_all_land_by_compare_and_swap(hub: Hub, owner: str) -> None:
    """Commits without parent_commit that race are rebuilt on the new head, none lost."""
    from concurrent.futures import ThreadPoolExecutor

    repo = new_repo(hub, owner)
    api = _api(hub, hub.make_token(owner, "write"))
    api.upload_file(path_or_fileobj=b"0", path_in_repo="base.txt", repo_id=repo.repo_id)

    def upload(index: int) -> str:
        return api.upload_file(
            path_or_fileobj=f"{index}".encode(), path_in_repo=f"f{index}.txt", repo_id=repo.repo_id
        ).oid

    with ThreadPoolExecutor(8) as pool:
        oids = list(pool.map(upload, range(8)))
    files = set(api.list_repo_files(repo.repo_id))
    assert files == {"base.txt"} | {f"f{i}.txt" for i in range(8)}
    history = [c.commit_id for c in api.list_repo_commits(repo.repo_id)]
    assert len(history) == 9 and set(oids) <= set(history)
    events = [e for e in hub.accounts.audit.events(200) if e.event == "api.commit"]
    assert {e.detail["new"] for e in events} >= set(oids)


def test_refused_uploads_by_permission_change_nothing(hub: Hub, owner: str, tmp_path: Path):
    repo = new_repo(hub, owner, private=False)
    api = _api(hub, hub.make_token(owner, "write"))
    base = api.upload_file(path_or_fileobj=b"1", path_in_repo="a.txt", repo_id=repo.repo_id).oid
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(11 * MiB))
    reader = _api(hub, hub.make_token(owner, "read"))
    with pytest.raises(HfHubHTTPError) as caught:
        reader.upload_file(path_or_fileobj=big, path_in_repo="big.bin", repo_id=repo.repo_id)
    assert caught.value.response.status_code == 403
    assert "read role" in str(caught.value)
    stranger = _api(hub, hub.make_token(hub.make_user(), "write"))
    with pytest.raises(HfHubHTTPError) as caught:
        stranger.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=repo.repo_id)
    assert caught.value.response.status_code == 403
    hidden = new_repo(hub, owner, private=True)
    with pytest.raises(RepositoryNotFoundError):
        stranger.upload_file(path_or_fileobj=b"x", path_in_repo="x.txt", repo_id=hidden.repo_id)
    assert api.model_info(repo.repo_id).sha == base
    # The LFS batch API's refusals carry X-Error-Message, the text huggingface_hub shows.
    oid = hashlib.sha256(b"x").hexdigest()
    body = json.dumps({"operation": "upload", "objects": [{"oid": oid, "size": 1}]}).encode()
    status, headers, _ = raw_request(
        hub,
        "POST",
        f"/{repo.repo_id}.git/info/lfs/objects/batch",
        token=hub.make_token(owner, "read"),
        body=body,
        headers={"Content-Type": "application/vnd.git-lfs+json"},
    )
    assert status == 403 and "read role" in headers["X-Error-Message"]
    status, headers, _ = raw_request(
        hub,
        "POST",
        f"/{hidden.repo_id}.git/info/lfs/objects/batch",
        token=hub.make_token(hub.make_user(), "write"),
        body=body,
        headers={"Content-Type": "application/vnd.git-lfs+json"},
    )
    assert status == 404 and headers["X-Error-Code"] == "RepoNotFound"
