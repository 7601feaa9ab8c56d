"""Start-up cost of ``git credential fill`` with git-credential-hf.

Git starts the helper two or three times per clone or push, so its start-up is the
cost users feel. This measures, in one run and interleaved (so machine noise hits all
alike), the median wall time of:

  python -c pass                    a bare start of the same interpreter (the floor)
  helper get (installed)            git-credential-hf get, as `pip install` installs it
                                    (the repository's shim, not a generated console script)
  helper get (lean launcher)        the smallest possible launcher of the same code
  git credential fill / store       git with its own credential-store helper
  git credential fill / hf          git with our helper (installed)
  git credential fill / hf (lean)   git with our helper (lean launcher)

and prints ratios. Goal: helper get <= 1.5x a bare Python start.
Usage: python bench/credential_fill.py [--runs N]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from support import git_env

SRC = Path(__file__).resolve().parent.parent / "src"
REQUEST = b"protocol=https\nhost=example.com\n\n"


def sandbox(root: Path) -> dict[str, str]:
    """An isolated HOME holding one credential in our store and one in git's store."""
    bin_dir = root / "bin"
    bin_dir.mkdir()
    lean = bin_dir / "git-credential-hflean"
    lean.write_text(
        f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {str(SRC)!r})\n"
        "from hfgit.credential.main import main\nsys.exit(main())\n"
    )
    lean.chmod(0o755)
    installed = shutil.which("git-credential-hf", path=os.path.dirname(sys.executable))
    if installed is None:  # not pip-installed: the lean launcher stands in
        (bin_dir / "git-credential-hf").symlink_to(lean)
    path = os.pathsep.join([str(bin_dir), os.path.dirname(sys.executable), os.environ["PATH"]])
    env = {**git_env(root), "PATH": path}
    entry = b"protocol=https\nhost=example.com\nusername=bench\npassword=bench-secret\n\n"
    for helper in ("hf", "store"):
        subprocess.run(
            ["git", "-c", f"credential.helper={helper}", "credential", "approve"],
            input=entry,
            env=env,
            check=True,
        )
    return env


def timed(command: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    result = subprocess.run(command, input=REQUEST, env=env, capture_output=True)
    elapsed = time.perf_counter() - start
    if result.returncode != 0 or (
        b"password=bench-secret" not in result.stdout and "pass" not in command
    ):
        raise SystemExit(f"{command} did not answer: {result.stderr.decode()}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=40)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        env = sandbox(Path(tmp))
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "helper get (installed)": ["git-credential-hf", "get"],
            "helper get (lean launcher)": ["git-credential-hflean", "get"],
            "git credential fill / store": [
                "git",
                "-c",
                "credential.helper=store",
                "credential",
                "fill",
            ],
            "git credential fill / hf": ["git", "-c", "credential.helper=hf", "credential", "fill"],
            "git credential fill / hf (lean)": (
                ["git", "-c", "credential.helper=hflean", "credential", "fill"]
            ),
        }
        samples: dict[str, list[float]] = {name: [] for name in commands}
        for command in commands.values():  # warm caches (.pyc, page cache)
            timed(command, env)
        for _ in range(args.runs):
            for name, command in commands.items():
                samples[name].append(timed(command, env))
    median = {name: statistics.median(values) * 1000 for name, values in samples.items()}
    print(f"median of {args.runs} runs each, interleaved ({sys.executable})")
    for name, value in median.items():
        print(f"  {name:<36} {value:7.1f} ms")
    ratios = [
        ("helper get (installed)", "python -c pass"),
        ("helper get (lean launcher)", "python -c pass"),
        ("git credential fill / hf", "git credential fill / store"),
        ("git credential fill / hf (lean)", "git credential fill / store"),
        ("git credential fill / hf", "python -c pass"),
        ("git credential fill / hf (lean)", "python -c pass"),
    ]
    print("ratios")
    for a, b in ratios:
        print(f"  {a + ' / ' + b:<66} {median[a] / median[b]:5.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
