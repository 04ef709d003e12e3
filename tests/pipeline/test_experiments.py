"""The whole pipeline through DVC in a temporary copy of the project: `dvc repro`, then an
experiment with `dvc exp run -S`, `dvc exp show`, `dvc metrics diff`, `dvc params diff` and
`dvc plots diff`, checking that a changed param re-runs only the stages that depend on it and
changes the metrics it should."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import git, project_on_history, run_dvc

pytestmark = pytest.mark.slow


dvc = run_dvc


ALWAYS = {"ingest": ["always changed"], "retry": ["always changed"]}  # `dvc status` when all is done


def ran(output: str) -> set[str]:
    return set(re.findall(r"Running stage '([^']+)'", output))


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    project = project_on_history(tmp_path_factory.mktemp("experiments"), repos=2, commits_per_repo=16)
    params = yaml.safe_load((project / "params.yaml").read_text())
    out = dvc(project, "repro")
    predictors = set(params["generate"]["predictors"])
    expected = {"ingest", "filter", "label", "process", "split", "finetune", "posttrain", "retry", "evaluate",
                "report"}
    expected |= {f"generate@{p}" for p in predictors} | {f"judge@{p}" for p in predictors}
    assert ran(out) == expected
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "baseline results")
    return project


def test_repro_writes_metrics_for_every_predictor(project):
    metrics = json.loads((project / "metrics/evaluate.json").read_text())
    params = yaml.safe_load((project / "params.yaml").read_text())
    for name in params["generate"]["predictors"]:
        for key in ("exact_match", "partial_match", "position_match", "llm_judge"):
            assert 0.0 <= metrics[f"{name}.{key}"] <= 1.0, (name, key)
    # identity predicts no change: it can never match a ground truth that changes the file
    assert metrics["identity.exact_match"] == 0.0
    # only ingest and retry (always_changed: re-mine the repositories, mark failures to ask again) are pending
    assert json.loads(dvc(project, "status", "--json")) == ALWAYS


def test_experiment_reruns_only_dependents_and_diffs(project):
    def read(name: str) -> dict:
        return json.loads((project / "metrics" / name).read_text())

    headline, details = read("evaluate.json"), read("evaluate/details.json")
    out = dvc(project, "exp", "run", "-n", "ctx0", "-S", "evaluate.context_lines=0")
    assert ran(out) == {"ingest", "retry", "evaluate", "report"}  # ingest, retry: always; report reads evaluate's

    # context_lines is the refined position match's context (the paper's hunks keep their 3 lines)
    assert read("evaluate.json") == headline
    after = read("evaluate/details.json")
    changed = {k for k in details if details[k] != after.get(k)}
    assert changed, "a different position-match context should change some metric"
    assert all("position_match_chunk" in k for k in changed), changed  # the rate, its interval, agreement

    # details.json is a plain output (`dvc metrics show` keeps to the headline): named as a target
    diff = json.loads(dvc(project, "metrics", "diff", "--json", "--targets", "metrics/evaluate/details.json",
                          "metrics/evaluate.json"))
    assert set(diff.get("metrics/evaluate/details.json", {})) == changed
    assert "metrics/evaluate.json" not in diff
    params = json.loads(dvc(project, "params", "diff", "--json"))
    assert params["params.yaml"] == {"evaluate.context_lines": {"old": 3, "new": 0, "diff": -3}}
    shown = json.loads(dvc(project, "exp", "show", "--json"))
    # the baseline row's experiments: {"name", "revs": [{"name", "data": {"params": ...}}]}
    runs = {rev["name"]: rev for row in shown for e in (row.get("experiments") or []) for rev in e["revs"]}
    assert list(runs) == ["ctx0"]
    assert runs["ctx0"]["data"]["params"]["params.yaml"]["data"]["evaluate"]["context_lines"] == 0
    dvc(project, "plots", "diff", "-o", "plots_out")
    assert (project / "plots_out" / "index.html").stat().st_size > 0


def test_a_second_clone_reproduces_the_same_bytes(project, tmp_path):
    """Identical reruns: a fresh clone of the same commit, `dvc repro`: the same dvc.lock and
    metrics/ (measured times live only under metrics/timing/, which no stage declares)."""
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    (clone / "dvc.lock").unlink()  # rebuilt from nothing, not checked out
    shutil.rmtree(clone / "metrics")
    dvc(clone, "repro")

    def tracked(root: Path) -> dict[str, bytes]:
        files = {"dvc.lock": (root / "dvc.lock").read_bytes()}
        for path in sorted((root / "metrics").rglob("*")):
            rel = path.relative_to(root)
            if path.is_file() and "timing" not in rel.parts:
                files[str(rel)] = path.read_bytes()
        return files

    theirs = tracked(clone)
    # the project's committed baseline (its workspace may hold an experiment applied by another test)
    committed = git(project, "ls-files", "dvc.lock", "metrics").split()
    assert sorted(committed) == sorted(theirs)
    ours = {name: subprocess.run(["git", "show", f"HEAD:{name}"], cwd=project, capture_output=True, check=True).stdout
            for name in committed}
    assert [name for name in ours if ours[name] != theirs[name]] == []
    assert json.loads(dvc(clone, "status", "--json")) == ALWAYS
    dvc(clone, "repro")
    assert json.loads(dvc(clone, "status", "--json")) == ALWAYS


@pytest.mark.parametrize(
    ("override", "line"),
    [
        ("+label.concurency=4", "label.concurency: unknown key (did you mean label.concurrency?)"),
        ("filter.max_chunk_lines=abc", "filter.max_chunk_lines: 'abc' is not an integer"),
    ],
)
def test_a_bad_override_fails_at_once_naming_the_key(tmp_path, override, line):
    """`dvc exp run -S` with a misspelt or mistyped param stops in the first stage, before any work."""
    project = project_on_history(tmp_path, repos=1, commits_per_repo=3)
    done = subprocess.run(["dvc", "exp", "run", "-S", override], cwd=project, capture_output=True, text=True)
    assert done.returncode != 0
    output = done.stdout + done.stderr
    assert f"params.yaml: {line}" in output
    assert "Traceback" not in output
    assert ran(output) <= {"ingest"}  # the first stage stopped: nothing ran after it
    assert not [p for p in (project / "data").rglob("*") if p.is_file() and p.name != ".gitignore"]  # no output
