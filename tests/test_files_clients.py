"""The libraries ML teams call, unchanged, with ``HF_ENDPOINT`` pointing at hfgit serve:
transformers (no torch), datasets, and the ``hf`` command line. Each runs in its own
process, because these libraries read ``HF_ENDPOINT`` when they are imported."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from huggingface_hub import HfApi

from filesupport import new_repo, run_client, run_hf
from hubtest import Hub

MiB = 1024 * 1024


@pytest.fixture(scope="module")
def owner(hub: Hub) -> str:
    return hub.make_user()


def _ok(result) -> str:
    assert result.returncode == 0, result.stderr[-4000:]
    return result.stdout


def _tokenizer_files(folder: Path) -> None:
    """A BERT config and a real fast tokenizer, built here with the tokenizers library."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, "[CLS]": 1, "[SEP]": 2, "[PAD]": 3, "hello": 4, "world": 5}
    tokenizer = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    folder.mkdir(parents=True, exist_ok=True)
    tokenizer.save(str(folder / "tokenizer.json"))
    config = {"model_type": "bert", "hidden_size": 8, "num_attention_heads": 2, "vocab_size": 6}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "PreTrainedTokenizerFast",
                "unk_token": "[UNK]",
                "pad_token": "[PAD]",
                "model_max_length": 16,
            }
        )
    )


def test_transformers_auto_config_and_tokenizer_on_a_private_repo(
    hub: Hub, owner: str, tmp_path: Path, hf_home: Path
) -> None:
    repo = new_repo(hub, owner, private=True)
    token = hub.make_token(owner, "write")
    _tokenizer_files(tmp_path / "model")
    HfApi(endpoint=hub.url, token=token).upload_folder(
        folder_path=tmp_path / "model", repo_id=repo.repo_id
    )
    read = hub.make_token(owner, "read")
    code = f"""
from transformers import AutoConfig, AutoTokenizer
config = AutoConfig.from_pretrained({repo.repo_id!r}, token={read!r})
print("hidden", config.hidden_size)
tokenizer = AutoTokenizer.from_pretrained({repo.repo_id!r}, token={read!r})
print("ids", tokenizer("hello world")["input_ids"])
"""
    out = _ok(run_client(hub, code, hf_home, env={"HF_TOKEN": read}))
    assert "hidden 8" in out and "ids [4, 5]" in out
    # Without the token the private repo is not there, as on the Hub.
    denied = run_client(
        hub,
        f"from transformers import AutoConfig; AutoConfig.from_pretrained({repo.repo_id!r})",
        tmp_path / "other-home",
    )
    assert denied.returncode != 0
    assert "RepositoryNotFoundError" in denied.stderr or "not a valid model" in denied.stderr


@pytest.mark.parametrize("kind", ["csv", "parquet"])
def test_datasets_load_dataset_of_a_private_dataset(
    hub: Hub, owner: str, tmp_path: Path, hf_home: Path, kind: str
) -> None:
    import pandas as pd

    repo = new_repo(hub, owner, private=True, type="dataset")
    token = hub.make_token(owner, "write")
    folder = tmp_path / "data"
    (folder / "data").mkdir(parents=True)
    frame = pd.DataFrame({"text": [f"row {i}" for i in range(50)], "label": list(range(50))})
    if kind == "csv":
        frame.to_csv(folder / "data" / "train.csv", index=False)
    else:
        frame.to_parquet(folder / "data" / "train.parquet", index=False)
    HfApi(endpoint=hub.url, token=token).upload_folder(
        folder_path=folder, repo_id=repo.repo_id, repo_type="dataset"
    )
    read = hub.make_token(owner, "read")
    code = f"""
import datasets
data = datasets.load_dataset({repo.repo_id!r}, token={read!r}, split="train")
print("rows", len(data), data[7]["text"], data[49]["label"])
"""
    out = _ok(run_client(hub, code, hf_home))
    assert "rows 50 row 7 49" in out


def test_hf_cli_upload_and_download(hub: Hub, owner: str, tmp_path: Path, hf_home: Path):
    token = hub.make_token(owner, "write")
    name = f"{owner}/cli-{os.urandom(3).hex()}"
    folder = tmp_path / "up"
    folder.mkdir()
    (folder / "config.json").write_text('{"cli": true}\n')
    (folder / "weights.bin").write_bytes(os.urandom(11 * MiB))
    env = {"HF_TOKEN": token}
    _ok(run_hf(hub, ["upload", name, str(folder), ".", "--private"], hf_home, env))
    _ok(
        run_hf(
            hub,
            ["upload", name, str(folder / "config.json"), "b.json", "--revision", "dev"],
            hf_home,
            env,
        )
    )
    out = tmp_path / "down"
    _ok(run_hf(hub, ["download", name, "--local-dir", str(out)], hf_home, env))
    assert (out / "config.json").read_text() == '{"cli": true}\n'
    assert (out / "weights.bin").read_bytes() == (folder / "weights.bin").read_bytes()
    one = _ok(run_hf(hub, ["download", name, "config.json", "--revision", "dev"], hf_home, env))
    downloaded = one.strip().splitlines()[-1].strip().removeprefix("path:").strip()
    assert Path(downloaded).read_text() == '{"cli": true}\n'
    files = HfApi(endpoint=hub.url, token=token).list_repo_files(name, revision="dev")
    assert "b.json" in files


def test_a_xet_upload_fails_with_a_message_that_names_the_switch(
    hub: Hub, owner: str, tmp_path: Path, hf_home: Path
) -> None:
    """With hf_xet installed and HF_HUB_DISABLE_XET unset, huggingface_hub asks for a Xet
    token for LFS-sized files; hfgit refuses with what to set instead."""
    repo = new_repo(hub, owner)
    token = hub.make_token(owner, "write")
    big = tmp_path / "big.bin"
    big.write_bytes(os.urandom(11 * MiB))
    code = f"""
from huggingface_hub import HfApi
HfApi(token={token!r}).upload_file(path_or_fileobj={str(big)!r}, path_in_repo="big.bin",
                                   repo_id={repo.repo_id!r})
"""
    result = run_client(hub, code, hf_home, env={"HF_HUB_DISABLE_XET": ""})
    assert result.returncode != 0
    assert "xet-write-token" in result.stderr
    assert HfApi(endpoint=hub.url, token=token).list_repo_refs(repo.repo_id).branches == []
