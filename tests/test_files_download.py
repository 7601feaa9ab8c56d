"""Downloads through the Hub's file API with the real huggingface_hub: resolve, snapshots,
repository info, trees, refs and commits, against ``hfgit serve``."""

from __future__ import annotations

import hashlib
import http.client
import os
from pathlib import Path

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from filesupport import new_repo, raw_request, seed
from hfgit.names import RepoId
from hubtest import Git, Hub, install_lfs, running_hub

WEIGHTS = os.urandom(3 * 1024 * 1024 + 5)


@pytest.fixture(scope="module")
def owner(hub: Hub) -> str:
    return hub.make_user()


@pytest.fixture(scope="module")
def model(hub: Hub, owner: str, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A private model with a history: two commits on main, a tag, a branch with ``/``."""
    git = install_lfs(Git(tmp_path_factory.mktemp("home")))
    work = tmp_path_factory.mktemp("work") / "w"
    repo = new_repo(hub, owner)
    token = hub.make_token(owner, "write")
    first = seed(hub, git, work, repo, token, {"config.json": '{"v": 1}\n', "README.md": "hi\n"})
    git.run("tag", "v1", cwd=work)
    git.run("push", "-q", hub.repo_url(repo), "v1", cwd=work, token=token)
    files = {
        "config.json": '{"v": 2}\n',
        "sub/dir/a b.txt": "spaced\n",
        "sub/é+#.txt": "odd\n",
        "model.safetensors": WEIGHTS,
    }
    second = seed(hub, git, work, repo, token, files, lfs=("*.safetensors",))
    git.run("push", "-q", hub.repo_url(repo), "HEAD:refs/heads/feat/x", cwd=work, token=token)
    return {"repo": repo, "first": first, "second": second, "token": token}


def test_hf_hub_download_regular_and_lfs_files(hub: Hub, model: dict, hf_home: Path) -> None:
    repo, token = model["repo"].repo_id, model["token"]
    config = hf_hub_download(repo, "config.json", endpoint=hub.url, token=token)
    assert Path(config).read_text() == '{"v": 2}\n'
    weights = hf_hub_download(repo, "model.safetensors", endpoint=hub.url, token=token)
    assert Path(weights).read_bytes() == WEIGHTS
    # The cache names blobs by ETag: the LFS sha256 here, as on the Hub.
    assert Path(weights).resolve().name == hashlib.sha256(WEIGHTS).hexdigest()
    spaced = hf_hub_download(repo, "sub/dir/a b.txt", endpoint=hub.url, token=token)
    assert Path(spaced).read_text() == "spaced\n"
    odd = hf_hub_download(repo, "sub/é+#.txt", endpoint=hub.url, token=token)
    assert Path(odd).read_text() == "odd\n"


def test_resolve_headers_and_ranges(hub: Hub, model: dict) -> None:
    repo, token = model["repo"], model["token"]
    path = f"/{repo.url_path}/resolve/main/model.safetensors"
    status, headers, body = raw_request(hub, "HEAD", path, token=token)
    oid = hashlib.sha256(WEIGHTS).hexdigest()
    assert status == 200 and body == b""
    assert headers["X-Repo-Commit"] == model["second"]
    assert headers["ETag"] == headers["X-Linked-Etag"] == f'"{oid}"'
    assert headers["X-Linked-Size"] == headers["Content-Length"] == str(len(WEIGHTS))
    assert not any(name.lower().startswith("x-xet") for name in headers)

    status, headers, body = raw_request(
        hub, "GET", path, token=token, headers={"Range": "bytes=10-19"}
    )
    assert status == 206 and body == WEIGHTS[10:20]
    assert headers["Content-Range"] == f"bytes 10-19/{len(WEIGHTS)}"
    status, _, body = raw_request(hub, "GET", path, token=token, headers={"Range": "bytes=-7"})
    assert status == 206 and body == WEIGHTS[-7:]
    start = len(WEIGHTS) - 100
    status, _, body = raw_request(
        hub, "GET", path, token=token, headers={"Range": f"bytes={start}-"}
    )
    assert status == 206 and body == WEIGHTS[start:]
    status, headers, _ = raw_request(
        hub, "GET", path, token=token, headers={"Range": f"bytes={len(WEIGHTS)}-"}
    )
    assert status == 416 and headers["Content-Range"] == f"bytes */{len(WEIGHTS)}"

    config = f"/{repo.url_path}/resolve/main/config.json"
    status, headers, body = raw_request(
        hub, "GET", config, token=token, headers={"Range": "bytes=2-4"}
    )
    assert status == 206 and body == b'v":'
    status, headers, body = raw_request(hub, "GET", config, token=token)
    assert (
        headers["ETag"].strip('"')
        == hashlib.sha1(b"blob %d\x00" % len(body) + body, usedforsecurity=False).hexdigest()
    )
    assert "X-Linked-Etag" not in headers


def test_snapshot_download_at_branch_tag_and_old_commit(
    hub: Hub, model: dict, hf_home: Path
) -> None:
    repo, token = model["repo"].repo_id, model["token"]
    latest = Path(snapshot_download(repo, endpoint=hub.url, token=token))
    assert latest.name == model["second"]
    assert (latest / "model.safetensors").read_bytes() == WEIGHTS
    assert (latest / "sub/dir/a b.txt").read_text() == "spaced\n"
    tagged = Path(snapshot_download(repo, revision="v1", endpoint=hub.url, token=token))
    assert tagged.name == model["first"]
    assert (tagged / "config.json").read_text() == '{"v": 1}\n'
    assert not (tagged / "model.safetensors").exists()
    old = Path(snapshot_download(repo, revision=model["first"], endpoint=hub.url, token=token))
    assert sorted(p.name for p in old.iterdir()) == ["README.md", "config.json"]
    branch = Path(snapshot_download(repo, revision="feat/x", endpoint=hub.url, token=token))
    assert branch.name == model["second"]


def test_model_info_tree_refs_and_commits(hub: Hub, model: dict) -> None:
    repo, token = model["repo"].repo_id, model["token"]
    api = HfApi(endpoint=hub.url, token=token)
    info = api.model_info(repo)
    assert info.id == repo and info.sha == model["second"] and info.private is True
    assert info.gated is False and info.last_modified and info.created_at
    assert ".gitattributes" in {s.rfilename for s in info.siblings}
    assert api.model_info(repo, revision="v1").sha == model["first"]
    assert api.model_info(repo, revision="feat/x").sha == model["second"]
    full = api.model_info(repo, files_metadata=True)
    weights = next(s for s in full.siblings if s.rfilename == "model.safetensors")
    assert (
        weights.size == len(WEIGHTS) and weights.lfs.sha256 == hashlib.sha256(WEIGHTS).hexdigest()
    )

    tree = {entry.path: entry for entry in api.list_repo_tree(repo, recursive=True)}
    assert tree["model.safetensors"].size == len(WEIGHTS)
    assert tree["model.safetensors"].lfs.sha256 == hashlib.sha256(WEIGHTS).hexdigest()
    assert tree["model.safetensors"].lfs.pointer_size < 200
    assert len(tree["model.safetensors"].blob_id) == 40
    assert tree["sub"].tree_id and tree["sub/dir"].tree_id
    assert not any(getattr(e, "xet_hash", None) for e in tree.values())
    top = [e.path for e in api.list_repo_tree(repo)]
    assert "sub/dir/a b.txt" not in top and "sub" in top
    inner = [e.path for e in api.list_repo_tree(repo, path_in_repo="sub/dir")]
    assert inner == ["sub/dir/a b.txt"]
    expanded = list(api.list_repo_tree(repo, path_in_repo="sub", expand=True))
    assert all(e.last_commit is not None for e in expanded)
    with pytest.raises(EntryNotFoundError):
        list(api.list_repo_tree(repo, path_in_repo="additional_chat_templates"))
    paths = api.get_paths_info(repo, ["config.json", "sub", "missing.txt"])
    assert sorted(p.path for p in paths) == ["config.json", "sub"]

    refs = api.list_repo_refs(repo)
    assert {b.name for b in refs.branches} == {"main", "feat/x"}
    assert [(t.name, t.target_commit) for t in refs.tags] == [("v1", model["first"])]
    commits = api.list_repo_commits(repo)
    assert [c.commit_id for c in commits] == [model["second"], model["first"]]
    assert commits[0].title == "seed"


def test_tree_pages_follow_an_absolute_link(hub: Hub, owner: str, git: Git, tmp_path: Path):
    repo = new_repo(hub, owner)
    token = hub.make_token(owner, "write")
    files = {f"f/{i:04d}.txt": f"{i}\n" for i in range(1100)}
    seed(hub, git, tmp_path / "w", repo, token, files)
    status, headers, _ = raw_request(
        hub, "GET", f"/api/models/{repo.repo_id}/tree/main?recursive=true", token=token
    )
    assert status == 200 and headers["Link"].startswith(f"<{hub.url}/api/models/")
    listed = HfApi(endpoint=hub.url, token=token).list_repo_files(repo.repo_id)
    assert len(listed) == 1100


def test_missing_things_raise_the_clients_own_errors(
    hub: Hub, model: dict, owner: str, hf_home: Path
) -> None:
    repo, token = model["repo"].repo_id, model["token"]
    with pytest.raises(EntryNotFoundError):
        hf_hub_download(repo, "nope.json", endpoint=hub.url, token=token)
    status, headers, _ = raw_request(hub, "HEAD", f"/{repo}/resolve/main/nope.json", token=token)
    assert status == 404 and headers["X-Error-Code"] == "EntryNotFound"
    assert headers["X-Repo-Commit"] == model["second"]
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo, "config.json", revision="nope", endpoint=hub.url, token=token)
    with pytest.raises(RevisionNotFoundError):
        HfApi(endpoint=hub.url, token=token).model_info(repo, revision="nope")
    stranger = hub.make_token(hub.make_user(), "write")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(repo, "config.json", endpoint=hub.url, token=stranger)
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download(repo, "config.json", endpoint=hub.url, token=False)
    with pytest.raises(RepositoryNotFoundError):
        HfApi(endpoint=hub.url, token=stranger).list_repo_refs(repo)

    gated = new_repo(hub, owner, private=False, gated="manual")
    api = HfApi(endpoint=hub.url, token=token)
    api.upload_file(path_or_fileobj=b"x\n", path_in_repo="x.txt", repo_id=gated.repo_id)
    with pytest.raises(GatedRepoError):
        hf_hub_download(gated.repo_id, "x.txt", endpoint=hub.url, token=stranger)
    with pytest.raises(GatedRepoError):
        hf_hub_download(gated.repo_id, "x.txt", endpoint=hub.url, token=False)
    read_only = hub.make_token(owner, "read")
    with pytest.raises(HfHubHTTPError) as caught:
        HfApi(endpoint=hub.url, token=read_only).upload_file(
            path_or_fileobj=b"y", path_in_repo="y.txt", repo_id=repo
        )
    assert caught.value.response.status_code == 403


def test_empty_repository_answers_revision_not_found(hub: Hub, owner: str, hf_home: Path):
    repo = new_repo(hub, owner)
    token = hub.make_token(owner, "read")
    api = HfApi(endpoint=hub.url, token=token)
    with pytest.raises(RevisionNotFoundError):
        api.model_info(repo.repo_id)
    with pytest.raises(RevisionNotFoundError):
        snapshot_download(repo.repo_id, endpoint=hub.url, token=token)
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download(repo.repo_id, "config.json", endpoint=hub.url, token=token)
    with pytest.raises(RevisionNotFoundError):
        list(api.list_repo_tree(repo.repo_id))
    refs = api.list_repo_refs(repo.repo_id)
    assert refs.branches == [] and refs.tags == []


def _workers(master: int) -> list[int]:
    """The pids of gunicorn's workers under ``master``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                status = (entry / "status").read_text()
            except OSError:
                continue
            if f"\nPPid:\t{master}\n" in status:
                pids.append(int(entry.name))
    return pids


def _kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(field)


def test_large_lfs_downloads_keep_server_memory_flat(
    tmp_path_factory: pytest.TempPathFactory, hf_home: Path, tmp_path: Path
) -> None:
    data_dir = tmp_path_factory.mktemp("flat") / "data"
    with running_hub(data_dir, workers=1) as hub:
        accounts, url, process = hub.accounts, hub.url, hub.process
        accounts.users.create_user("big")
        repo = "big/weights"
        accounts.repos.create(RepoId.parse(repo), private=True)
        token, _ = accounts.tokens.create("big", "t", "write")
        size = 96 * 1024 * 1024
        source = tmp_path / "weights.bin"
        digest = hashlib.sha256()
        with source.open("wb") as out:
            for _ in range(size // (4 * 1024 * 1024)):
                chunk = os.urandom(4 * 1024 * 1024)
                digest.update(chunk)
                out.write(chunk)
        HfApi(endpoint=url, token=token).upload_file(
            path_or_fileobj=source, path_in_repo="weights.bin", repo_id=repo
        )
        (worker,) = _workers(process.pid)
        Path(f"/proc/{worker}/clear_refs").write_text("5")  # resets the peak (VmHWM)
        before = _kib(worker, "VmRSS")
        path = hf_hub_download(repo, "weights.bin", endpoint=url, token=token)
        check = hashlib.sha256()
        with open(path, "rb") as handle:
            while chunk := handle.read(4 * 1024 * 1024):
                check.update(chunk)
        assert check.hexdigest() == digest.hexdigest()
        connection = http.client.HTTPConnection(url.removeprefix("http://"), timeout=60)
        connection.request(
            "GET",
            f"/{repo}/resolve/main/weights.bin",
            headers={"Authorization": f"Bearer {token}", "Range": f"bytes=1-{size - 2}"},
        )
        answer = connection.getresponse()
        assert answer.status == 206
        received = 0
        while chunk := answer.read(1024 * 1024):
            received += len(chunk)
        connection.close()
        assert received == size - 2
        grown = _kib(worker, "VmHWM") - before
        print(f"worker peak grew by {grown} KiB serving {size >> 20} MiB twice")
        assert grown < 32 * 1024, f"the worker's peak memory grew by {grown} KiB"


def test_a_pruned_commit_is_not_served_after_a_repack(hub: Hub, owner: str, tmp_path: Path):
    """Workers keep repositories open between requests: a force push followed by a gc
    that prunes the old commit must make it unreachable at once, by branch and by id."""
    git = Git(tmp_path / "home")
    work = tmp_path / "w"
    repo = new_repo(hub, owner)
    token = hub.make_token(owner, "write")
    leaked = seed(hub, git, work, repo, token, {"secret.txt": "leaked\n"})
    path = f"/{repo.url_path}/resolve/{leaked}/secret.txt"
    for _ in range(24):  # reach every worker thread, so each one holds the repository open
        status, _, body = raw_request(hub, "GET", path, token=token)
        assert status == 200 and body == b"leaked\n"
    git.run("checkout", "-q", "--orphan", "clean", cwd=work)
    git.run("rm", "-q", "-rf", ".", cwd=work)
    fixed = git.commit(work, {"public.txt": "fine\n"}, message="clean")
    git.run("push", "-q", "-f", hub.repo_url(repo), "clean:main", cwd=work, token=token)
    bare = hub.accounts.repos.path(hub.accounts.repos.get(repo))
    git.run("-C", str(bare), "reflog", "expire", "--expire=now", "--all")
    git.run("-C", str(bare), "gc", "-q", "--prune=now")
    for _ in range(24):
        status, headers, _ = raw_request(hub, "GET", path, token=token)
        assert status == 404 and headers["X-Error-Code"] == "RevisionNotFound"
        status, headers, body = raw_request(
            hub, "GET", f"/{repo.url_path}/resolve/main/public.txt", token=token
        )
        assert status == 200 and body == b"fine\n" and headers["X-Repo-Commit"] == fixed
