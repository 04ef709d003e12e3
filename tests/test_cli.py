"""`nep <command>` (nep/cli.py): one entry for nep's commands, from any directory of the project."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import REPO_ROOT

from nep.cli import COMMANDS, main, usage

tomllib = pytest.importorskip("tomllib")  # Python 3.11+


def nep(*args: str, cwd=REPO_ROOT) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "nep", *args], cwd=cwd, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})


def test_help_lists_every_command():
    done = nep("--help")
    assert done.returncode == 0, done.stderr
    listed = [line.split()[0] for line in done.stdout.split("commands:\n")[1].splitlines() if line.startswith("  ")]
    assert listed == list(COMMANDS)
    assert {"config", "presets", "preflight", "compare"} <= set(COMMANDS)


def test_every_command_resolves_to_a_function_taking_argv():
    import importlib
    import inspect

    for name, command in COMMANDS.items():
        module, function = command.target.split(":")
        func = getattr(importlib.import_module(module), function)
        assert list(inspect.signature(func).parameters) == ["argv"], name


def test_the_installed_script_is_this_entry():
    scripts = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts == {"nep": "nep.cli:main"}
    requirements = (REPO_ROOT / "requirements.txt").read_text().splitlines()
    assert any(line.split("#")[0].strip() == "-e ." for line in requirements), "pip install -r installs `nep`"


def test_an_unknown_command_is_one_line_with_a_suggestion(capsys):
    with pytest.raises(SystemExit) as info:
        main(["confg"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "did you mean 'config'?" in err, err


def test_no_command_prints_the_usage_and_fails(capsys):
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2
    assert capsys.readouterr().out.strip() == usage()


def test_a_command_works_from_a_subdirectory():
    done = nep("config", cwd=REPO_ROOT / "docs")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "params.yaml: OK"


def test_outside_a_project_a_command_says_where_to_run(tmp_path):
    done = nep("config", cwd=tmp_path)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.startswith("config: ") and "not inside a nep project" in done.stderr, done.stderr
