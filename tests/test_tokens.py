"""Token format: shape, checksum and digest (DESIGN.md, "Token format")."""

from __future__ import annotations

import re

import pytest

from hfgit import tokens

SCANNER_PATTERN = re.compile(r"hf_[a-zA-Z]{34}")


def test_generated_tokens_match_the_scanner_shape_and_checksum():
    generated = {tokens.generate() for _ in range(200)}
    assert len(generated) == 200
    for token in generated:
        assert SCANNER_PATTERN.fullmatch(token)
        assert tokens.is_well_formed(token)


def _flip(token: str, index: int) -> str:
    char = token[index]
    replacement = "a" if char != "a" else "b"
    return token[:index] + replacement + token[index + 1 :]


@pytest.mark.parametrize("index", [3, 10, 30, 31, 36])
def test_a_single_typo_fails_the_checksum(index):
    token = tokens.generate()
    assert not tokens.is_well_formed(_flip(token, index))


@pytest.mark.parametrize(
    "value",
    [
        "",
        "hf_",
        "hf_abc",
        "api_org_" + "a" * 34,
        "HF_" + "a" * 34,
        "hf_" + "a" * 33 + "1",
        "hf_" + "é" * 34,
    ],
)
def test_malformed_values_are_rejected(value):
    assert not tokens.is_well_formed(value)


def test_digest_is_sha256_and_keyed_digest_differs():
    token = tokens.generate()
    plain = tokens.digest(token)
    assert re.fullmatch(r"[0-9a-f]{64}", plain)
    assert plain == tokens.digest(token)
    assert tokens.digest(token, b"key") != plain
    assert token not in plain


def test_passwords_and_org_tokens_are_told_apart():
    assert tokens.looks_like_token(tokens.generate())
    assert tokens.is_org_token("api_org_abcdef")
    assert not tokens.looks_like_token("correct horse battery staple")
