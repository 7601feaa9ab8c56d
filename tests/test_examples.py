"""The examples in examples/ run as documented."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hubtest import ROOT, free_port


def test_quickstart_script_runs_end_to_end(tmp_path: Path):
    env = {
        **os.environ,
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}",
        "PORT": str(free_port()),
        "TMPDIR": str(tmp_path),
    }
    result = subprocess.run(
        ["bash", str(ROOT / "examples" / "quickstart.sh")],
        capture_output=True,
        text=True,
        env=env,
        timeout=180,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "bob cloned datasets/acme/shared-data: weights v1" in lines
    assert any(
        line.startswith("bob's push was refused: You have the read role in organization acme")
        for line in lines
    )
    assert "bob cannot see alice/tiny-model" in lines
    assert lines[-1] == "quickstart: OK"
    assert "hf_" not in result.stdout + result.stderr
