"""The committed dvc.lock describes the committed code: a change to a stage's code (nep/, stages/)
committed without `dvc repro` would make every fresh clone's `dvc status` call those stages
modified, and `dvc repro` re-run them."""

from __future__ import annotations

import json
import subprocess

from conftest import REPO_ROOT


def run(*args: str) -> str:
    return subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, check=True).stdout


def related(a: str, b: str) -> bool:
    """One path is the other or lies inside it."""
    return a == b or a.startswith(b + "/") or b.startswith(a + "/")


def stale_code_deps(status: dict, tracked: set[str], edited: set[str], outs: set[str]) -> dict[str, list[str]]:
    """Stage → the dependencies `dvc status` calls modified that are code git tracks (a file, or a
    folder holding tracked files), not pipeline data (a stage's output, inside one or holding one:
    a clone without the data sees those change) and not edited in this checkout since the commit."""
    stale: dict[str, list[str]] = {}
    for stage, changes in status.items():
        for change in changes:
            deps = change.get("changed deps", {}) if isinstance(change, dict) else {}
            for path, state in deps.items():
                if state != "modified" or any(related(path, p) for p in (*edited, *outs)):
                    continue
                if path in tracked or any(t.startswith(path + "/") for t in tracked):
                    stale.setdefault(stage, []).append(path)
    return stale


def lock_outs() -> set[str]:
    """Every output path dvc.lock records."""
    import yaml

    lock = yaml.safe_load((REPO_ROOT / "dvc.lock").read_text())
    return {o["path"] for stage in lock["stages"].values() for o in stage.get("outs", [])}


def test_the_committed_lock_matches_the_committed_code():
    tracked = set(run("git", "ls-files").split())
    edited = {line[3:] for line in run("git", "status", "--porcelain", "--untracked-files=no").splitlines()}
    status = json.loads(run("dvc", "status", "--json"))
    assert stale_code_deps(status, tracked, edited, lock_outs()) == {}, "run `dvc repro` and commit dvc.lock"


def test_a_stale_code_hash_is_found_and_an_edited_one_left_to_the_author():
    status = {"generate@x": [{"changed deps": {"nep/predictors": "modified", "data/split/test.jsonl": "modified",
                                               "params.yaml": {"modified": "generate.seed"}}}],
              "evaluate": [{"changed deps": {"data/generate": "modified"}}],  # holds outputs and a tracked .gitignore
              "ingest": ["always changed"]}
    tracked = {"nep/predictors/file.py", "stages/generate.py", "data/generate/.gitignore", "data/split/.gitignore"}
    outs = {"data/generate/x.jsonl", "data/split/test.jsonl"}
    assert stale_code_deps(status, tracked, set(), outs) == {"generate@x": ["nep/predictors"]}
    assert stale_code_deps(status, tracked, {"nep/predictors/file.py"}, outs) == {}
