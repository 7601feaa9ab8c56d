"""The helper's ``get`` path stays cheap and independent of the server (DESIGN.md)."""

from __future__ import annotations

import sys

SCRIPT = """
import io, sys
sys.argv = ["git-credential-hf", "get"]
sys.stdin = io.TextIOWrapper(io.BytesIO(b"protocol=https\\nhost=huggingface.co\\n\\n"))
from hfgit.credential.main import main
main()
print("MODULES", " ".join(sorted(sys.modules)), file=sys.stderr)
"""

FORBIDDEN = {
    "hfgit.server",
    "hfgit.store",
    "hfgit.accounts",
    "hfgit.policy",
    "sqlalchemy",
    "dulwich",
    "werkzeug",
    "huggingface_hub",
    "json",
    "re",
    "typing",
    "dataclasses",
    "configparser",
    "pathlib",
    "urllib.request",
}


def test_get_imports_nothing_heavy(cred):
    result = cred.run([sys.executable, "-c", SCRIPT], env={"HF_TOKEN": ""})
    line = next(x for x in result.stderr.decode().splitlines() if x.startswith("MODULES"))
    loaded = set(line.split()[1:])
    assert "hfgit.credential.main" in loaded
    assert sorted(loaded & FORBIDDEN) == []
