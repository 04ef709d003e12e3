"""Issue 31 item 8: `dvc repro` run with a Python that lacks the project's requirements gave a
`No module named 'xxhash'` traceback; every stage now ends in one line saying what to do."""

from __future__ import annotations

import subprocess
import sys

import pytest
from conftest import REPO_ROOT

BLOCK_AND_RUN = ("import runpy, sys; sys.modules[{module!r}] = None; sys.argv = ['stages/{stage}.py']; "
                 "runpy.run_module('stages.{stage}', run_name='__main__', alter_sys=True)")


@pytest.mark.parametrize(("stage", "module"), [("ingest", "xxhash"), ("filter", "orjson"), ("label", "yaml")])
def test_a_missing_requirement_is_one_line_naming_the_fix(stage, module):
    done = subprocess.run([sys.executable, "-c", BLOCK_AND_RUN.format(module=module, stage=stage)], cwd=REPO_ROOT,
                          capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.strip().splitlines()[-1:] == [
        f"{stage}: module {module!r} is not installed in this Python ({sys.executable}): activate the project's "
        "virtual environment, or run `pip install -r requirements.txt`"], done.stderr


def test_a_bare_python_without_the_requirements(tmp_path):
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(tmp_path / "venv")], check=True)
    python = tmp_path / "venv" / "bin" / "python"
    done = subprocess.run([str(python), "-m", "stages.ingest"], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.startswith("ingest: module ") and "activate the project's virtual environment" in done.stderr


def test_a_bug_keeps_its_traceback():
    code = "import stages, sys; sys.argv = ['x']; import nep.no_such_module"
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True)
    assert done.returncode == 1 and "Traceback" in done.stderr and "nep.no_such_module" in done.stderr
