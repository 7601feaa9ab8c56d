"""``hfgit setup-git``: configure git to ask ``git-credential-hf``. Client side only.

Which form, and why: we write a plain ``credential.helper = hf``, not
``credential.<url>.helper``. ``huggingface_hub``'s ``login(add_to_git_credential=True)``
(and ``hf auth login --add-to-git-credential``) only calls ``git credential approve``
when ``git config --list`` shows a plain ``credential.helper=<name>`` line; a URL-scoped
helper is invisible to it. A plain helper is also asked about other hosts: it answers
only what it stored for exactly that origin, and hub tokens only to hub endpoints.
``credential.<endpoint>.useHttpPath = true`` is scoped to the endpoint, so git tells us
the repo path there (for per-repo tokens) without splitting other hosts' credentials
by path.
"""

from __future__ import annotations

import subprocess

HELPER = "hf"


class SetupError(Exception):
    """git config refused; the message carries git's own words."""


def _git_config(scope: str, *args: str, ok: tuple[int, ...] = (0,)) -> str:
    result = subprocess.run(
        ["git", "config", f"--{scope}", *args], capture_output=True, text=True, check=False
    )
    if result.returncode not in ok:
        raise SetupError(result.stderr.strip() or f"git config {' '.join(args)} failed")
    return result.stdout


def helpers(scope: str | None = None) -> list[str]:
    """Plain ``credential.helper`` values, in the order git asks them."""
    args = ["git", "config", "--get-all", "credential.helper"]
    if scope:
        args.insert(2, f"--{scope}")
    result = subprocess.run(args, capture_output=True, text=True, check=False)
    return result.stdout.splitlines()


def setup(endpoint: str, scope: str) -> list[str]:
    """Idempotently add the helper and ``useHttpPath``; return what changed."""
    changed = []
    if HELPER not in helpers(scope):
        _git_config(scope, "--add", "credential.helper", HELPER)
        changed.append(f"credential.helper = {HELPER}")
    key = f"credential.{endpoint}.useHttpPath"
    if _git_config(scope, "--get", key, ok=(0, 1)).strip() != "true":
        _git_config(scope, key, "true")
        changed.append(f"{key} = true")
    return changed


def undo(endpoint: str, scope: str) -> list[str]:
    """Remove exactly what ``setup`` adds; other helpers and settings stay."""
    changed = []
    if HELPER in helpers(scope):
        _git_config(scope, "--unset-all", "credential.helper", f"^{HELPER}$")
        changed.append(f"credential.helper = {HELPER}")
    key = f"credential.{endpoint}.useHttpPath"
    if _git_config(scope, "--get", key, ok=(0, 1)).strip():
        _git_config(scope, "--unset-all", key)
        changed.append(key)
    return changed
