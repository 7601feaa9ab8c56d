"""Helpers for the credential helper tests: real git, an isolated HOME, our helper on PATH.

Every test runs ``git credential fill|approve|reject`` (or git itself) with
``credential.helper=hf``, so git finds ``git-credential-hf`` on PATH exactly as it would
for a user. Unanswered fills reach an askpass script (as in git's t/lib-credential.sh)
instead of a terminal, so "the helper said nothing" is visible as ``askpass-*`` values.
Tokens are generated per test and only ever compared, never printed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from hfgit import tokens
from hubtest import run_cli

SRC = Path(__file__).resolve().parents[2] / "src"


def same_secret(actual: str | None, expected: str, what: str = "secret") -> None:
    """Fail without showing either value (pytest would print both in an ``assert ==``)."""
    if actual != expected:
        pytest.fail(f"{what}: got a different value (or none); values not shown", pytrace=False)


def not_secret(actual: str | None, forbidden: str, what: str = "secret") -> None:
    if actual == forbidden:
        pytest.fail(f"{what}: the token was released where it must not be", pytrace=False)


def unanswered(answer: dict[str, str]) -> None:
    """The helper said nothing, so git fell through to askpass (values never printed)."""
    if answer.get("password") != "askpass-password":
        pytest.fail("a helper answered where none should have; values not shown", pytrace=False)


def absent(secret: str, haystack: str | bytes, where: str = "output") -> None:
    """Fail if ``secret`` occurs in ``haystack``, without printing either."""
    needle = secret.encode() if isinstance(haystack, bytes) else secret
    if needle in haystack:
        pytest.fail(f"a token appears in the {where}; not shown", pytrace=False)


def new_token() -> str:
    return tokens.generate()


class Cred:
    """A sandbox: HOME, XDG dirs, HF_HOME, PATH with our helper, and git to drive it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.home = root / "home"
        self.bin = root / "bin"
        self.hf_home = root / "hf"
        for d in (self.home, self.bin, self.hf_home):
            d.mkdir(parents=True, exist_ok=True)
        helper = self.bin / "git-credential-hf"
        helper.write_text(
            f"#!{sys.executable}\n"
            f"import sys\nsys.path.insert(0, {str(SRC)!r})\n"
            "from hfgit.credential.main import main\nsys.exit(main())\n"
        )
        helper.chmod(0o755)
        askpass = self.bin / "askpass"
        askpass.write_text(
            "#!/bin/sh\necho >&2 askpass: $*\n"
            'what=$(echo $1 | cut -d" " -f1 | tr A-Z a-z | tr -cd a-z)\necho "askpass-$what"\n'
        )
        askpass.chmod(0o755)
        self.env = {
            "HOME": str(self.home),
            "XDG_CONFIG_HOME": str(self.home / ".config"),
            "XDG_CACHE_HOME": str(self.home / ".cache"),
            "HF_HOME": str(self.hf_home),
            "PATH": f"{self.bin}{os.pathsep}{os.environ['PATH']}",
            "PYTHONPATH": str(SRC),
            "GIT_CONFIG_NOSYSTEM": "1",
            "GIT_TERMINAL_PROMPT": "0",
            "GIT_ASKPASS": str(askpass),
            "LC_ALL": "C",
            "HF_HUB_DISABLE_TELEMETRY": "1",
        }

    @property
    def store_file(self) -> Path:
        return self.home / ".config" / "hfgit" / "credentials"

    def run(
        self,
        args: list[str],
        input: str | bytes = "",
        env: dict[str, str] | None = None,
        check: bool = True,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess:
        data = input.encode() if isinstance(input, str) else input
        result = subprocess.run(
            args,
            input=data,
            capture_output=True,
            env={**self.env, **(env or {})},
            timeout=120,
            cwd=cwd or self.root,
        )
        if check and result.returncode != 0:
            raise AssertionError(f"{args[:3]} exited {result.returncode}: {result.stderr.decode()}")
        return result

    def hfgit(
        self, *args: str, token: str = "", check: bool = True, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[bytes]:
        """``hfgit ARGS`` in the sandbox with ``token`` on stdin; output as bytes, like ``run``."""
        return run_cli(
            *args,
            env={**self.env, **(env or {})},
            input=token.encode(),
            check=check,
            text=False,
            cwd=self.root,
            timeout=120,
        )

    def git(self, action: str, lines: str, *config: str, **kw) -> subprocess.CompletedProcess:
        options = ["-c", "credential.helper=hf"]
        for item in config:
            options += ["-c", item]
        return self.run(["git", *options, "credential", action], lines, **kw)

    def fill(self, lines: str, *config: str, **kw) -> dict[str, str]:
        """``git credential fill``; the answer as a dict (``askpass-*`` when nobody knew)."""
        out = self.git("fill", lines, *config, **kw).stdout.decode()
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def approve(self, lines: str, *config: str, **kw) -> None:
        self.git("approve", lines, *config, **kw)

    def reject(self, lines: str, *config: str, **kw) -> subprocess.CompletedProcess:
        return self.git("reject", lines, *config, **kw)

    def helper(self, action: str, lines: str | bytes, **kw) -> subprocess.CompletedProcess:
        """``git credential-hf ACTION``: git runs our helper, for attributes git 2.39 lacks."""
        return self.run(["git", "credential-hf", action], lines, check=False, **kw)

    def helper_answer(self, lines: str, **kw) -> dict[str, str]:
        out = self.helper("get", lines, **kw)
        assert out.returncode == 0, out.stderr.decode()
        return dict(line.split("=", 1) for line in out.stdout.decode().splitlines())
