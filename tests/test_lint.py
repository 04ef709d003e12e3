"""`ruff check .` sees every Python file git tracks (pyproject's excludes name only the top-level
data/ and models/ output folders, never nep/data or tests/data)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import REPO_ROOT


def tracked_python_files() -> set[str]:
    out = subprocess.run(["git", "ls-files", "*.py"], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    return set(out.stdout.split())


def ruff_files() -> set[str]:
    out = subprocess.run(["ruff", "check", "--show-files", "."], cwd=REPO_ROOT, capture_output=True,
                         text=True, check=True)
    files = set()
    for line in out.stdout.splitlines():
        path = Path(line.strip())
        if path.suffix == ".py":
            files.add(path.resolve().relative_to(REPO_ROOT).as_posix())
    return files


@pytest.mark.skipif(shutil.which("ruff") is None, reason="ruff is not installed (requirements-dev.txt)")
def test_ruff_sees_every_tracked_python_file():
    tracked = tracked_python_files()
    assert {"nep/data/filter.py", "tests/data/test_filter.py"} <= tracked  # the folders once left out
    missing = sorted(tracked - ruff_files())
    assert not missing, f"ruff check . leaves out {len(missing)} tracked file(s): {missing[:10]}"
