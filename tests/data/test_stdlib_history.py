"""The CPython standard-library history (nep.data.stdlib_history): built from installed versions into
a git repository whose commits are the same bytes on every machine, and mined by ingest."""

from __future__ import annotations

import subprocess
from collections import Counter
from pathlib import Path

import pytest

from nep.data.sources.git import git_records
from nep.data.stdlib_history import build, ensure_history, installed, main, source_files
from nep.util.errors import NepError

BODY = "".join(f"def f{i}(x):\n    return x + {i}\n\n\n" for i in range(12))


def fake_pyenv(root: Path) -> Path:
    """Three CPython versions (3.9 twice: the newer patch release wins) and a Python 2."""
    versions = {
        "3.9.1": BODY, "3.9.18": BODY.replace("x + 3", "x - 3"),
        "3.10.13": BODY.replace("x + 3", "x - 3").replace("return x + 9", "return x * 9").replace("x + 11", "x * 11"),
        "2.7.18": BODY,
    }
    for version, text in versions.items():
        minor = ".".join(version.split(".")[:2])
        lib = root / version / "lib" / f"python{minor}"
        (lib / "json").mkdir(parents=True)
        (lib / "json" / "decoder.py").write_text(text)
        (lib / "site-packages" / "pkg").mkdir(parents=True)
        (lib / "site-packages" / "pkg" / "x.py").write_text("x = 1\n")
        (lib / "__pycache__").mkdir()
        (lib / "__pycache__" / "a.py").write_text("cached\n")
        (lib / f"config-{minor}-x86_64-linux-gnu").mkdir()
        (lib / f"config-{minor}-x86_64-linux-gnu" / "python-config.py").write_text("build\n")
        (lib / "README.txt").write_text("not python\n")
        (lib / "json" / "tool.py").write_text("import json\n")
        (lib / "json" / "tool.py").chmod(0o755)  # an executable bit does not reach the commit
    return root


def log(repo: Path) -> list[str]:
    out = subprocess.run(["git", "-C", str(repo), "log", "--format=%H %an %at %s", "main"], capture_output=True, text=True)
    return out.stdout.splitlines()


def test_versions_oldest_first_newest_patch_and_only_python_sources(tmp_path):
    root = fake_pyenv(tmp_path / "versions")
    libs = installed(root)
    assert list(libs) == ["3.9", "3.10"] and libs["3.9"].parent.parent.name == "3.9.18"
    assert source_files(libs["3.9"]) == ["json/decoder.py", "json/tool.py"]


def test_history_is_the_same_commits_wherever_it_is_built(tmp_path):
    root = fake_pyenv(tmp_path / "versions")
    first = build(tmp_path / "a", installed(root), quiet=True)
    second = build(tmp_path / "b", installed(root), quiet=True)
    assert first == second and [v for v, _ in first] == ["3.9", "3.10"]
    assert [line.split(" ", 1)[1] for line in log(tmp_path / "a")] == [
        "CPython developers 1577923200 Python 3.10 standard library (2 files)",
        "CPython developers 1577836800 Python 3.9 standard library (2 files)",
    ]
    tree = subprocess.run(["git", "-C", str(tmp_path / "a"), "ls-tree", "-r", "main"], capture_output=True, text=True).stdout
    assert all(line.startswith("100644 ") for line in tree.splitlines())
    with pytest.raises(NepError, match="exists and is not empty"):
        build(tmp_path / "a", installed(root))


def test_ingest_mines_the_release_diffs(tmp_path):
    root = fake_pyenv(tmp_path / "versions")
    repo = ensure_history(tmp_path / "hist", root)
    assert ensure_history(repo, root) == repo  # present: kept as it is
    drops: Counter = Counter()
    records = list(git_records([str(repo)], drops=drops, progress=False))
    assert [(r["new_file"], r["subject"]) for r in records] == [("json/decoder.py", "Python 3.10 standard library (2 files)")]
    assert "return x * 9" in records[0]["new_contents"] and records[0]["repos"] == "hist"


def test_too_few_versions_is_one_line_naming_the_param(tmp_path):
    (tmp_path / "versions" / "3.9.1" / "lib" / "python3.9").mkdir(parents=True)
    with pytest.raises(NepError, match=r"versions: ingest\.git\.stdlib_root: needs at least two"):
        ensure_history(tmp_path / "hist", tmp_path / "versions")
    assert not (tmp_path / "hist").exists()


def test_command_line(tmp_path, capsys):
    root = fake_pyenv(tmp_path / "versions")
    main([str(tmp_path / "h"), "--root", str(root), "--versions", "3.10", "3.9"])
    assert "2 commits, HEAD" in capsys.readouterr().out
    with pytest.raises(NepError, match="--versions: 3.11 not installed"):
        main([str(tmp_path / "h2"), "--root", str(root), "--versions", "3.11"])


def test_ingest_stage_builds_a_missing_history_first(tmp_path):
    from nep.config.schema import Ingest
    from stages.ingest import run

    root = fake_pyenv(tmp_path / "versions")
    git = {"repos": [str(tmp_path / "hist")], "rev": "HEAD", "max_commits": 0, "max_file_bytes": 10**6,
           "stdlib_root": str(root)}
    metrics = run(Ingest(source="git", languages=["Python"], git=git, workers=1),
                  output_dir=tmp_path / "out", metrics_path=tmp_path / "m.json", stamps=tmp_path / "s.json")
    assert metrics["records_out"] == 1 and (tmp_path / "hist" / ".git").is_dir()


def test_the_root_expands_home_and_asks_pyenv(tmp_path, monkeypatch):
    """`~` and $VARIABLES expand; `pyenv` is `pyenv root`/versions when pyenv is on PATH (here a
    stand-in script), else ~/.pyenv/versions."""
    from nep.data.stdlib_history import resolve_root

    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("WHERE", str(tmp_path / "elsewhere"))
    assert resolve_root("~/.pyenv/versions") == tmp_path / "home/.pyenv/versions"
    assert resolve_root("$WHERE/versions") == tmp_path / "elsewhere/versions"
    monkeypatch.setenv("PATH", str(tmp_path / "nobin"))
    assert resolve_root("pyenv") == tmp_path / "home/.pyenv/versions"
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "pyenv"
    script.write_text(f"#!/bin/sh\necho {tmp_path / 'opt/pyenv'}\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    assert resolve_root("pyenv") == tmp_path / "opt/pyenv/versions"


def test_missing_releases_are_named_in_one_install_line(tmp_path):
    from nep.data.stdlib_history import RELEASES, ensure_history

    root = tmp_path / "versions"
    (root / "3.10.13/lib/python3.10").mkdir(parents=True)
    with pytest.raises(NepError) as e:
        ensure_history(tmp_path / "history", root)
    line = str(e.value)
    assert "\n" not in line and "found ['3.10']" in line
    missing = [r for r in RELEASES if r != "3.10.13"]
    assert f"pyenv install {' '.join(missing)}" in line
