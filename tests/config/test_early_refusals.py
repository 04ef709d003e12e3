"""Checks that need only the inputs run before work starts (issue 31, item 6): a duplicated id in
an external test set is refused by split (judge used to stop on it after generate had paid), and
`evaluate.reference` naming no predictor by the config check (evaluate used to, at the end)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import yaml
from conftest import REPO_ROOT, make_example, problem_lines


def run(project: Path, *command: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", *command], cwd=project, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "NEP_CACHE_DIR": str(project / "c")})


def one_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = [line for line in problem_lines(done.stdout + done.stderr) if not line.startswith(("INFO", "WARN"))]
    assert len(lines) == 1, done.stdout + done.stderr
    return lines[0]


def processed(n: int, repo: str) -> list[dict]:
    return [{**make_example(f"a = {i}\n", f"a = {i}\nb = {i}\n", f"a = {i}\nb = {i}\nc = {i}\n", path=f"m{i}.py"),
             "id": f"{repo}-{i}", "repos": repo, "commit": f"{repo}c{i}"} for i in range(n)]


def write(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_split_refuses_an_external_test_set_with_a_duplicated_id(tmp_path):
    write(tmp_path / "data" / "process" / "examples.jsonl", processed(6, "ours"))
    theirs = processed(4, "theirs")
    theirs[3]["id"] = theirs[1]["id"]  # two examples, one id
    write(tmp_path / "theirs.jsonl", theirs)
    params = {"split": {"strategy": "external", "external_test": "theirs.jsonl"}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    line = one_line(run(tmp_path, "stages.split"))
    assert line == ("split.external_test: theirs.jsonl: 1 id(s) name more than one test example (first: "
                    "'theirs-1' (2 times)); generations and judgments are joined by id (give each test example "
                    "its own id)"), line
    assert not (tmp_path / "data" / "split").exists()
    theirs[3]["id"] = "theirs-3"  # fixed: the split is written
    write(tmp_path / "theirs.jsonl", theirs)
    done = run(tmp_path, "stages.split")
    assert done.returncode == 0, done.stderr
    assert len((tmp_path / "data" / "split" / "test.jsonl").read_text().splitlines()) == 4


def test_the_config_check_refuses_a_reference_that_is_no_predictor(tmp_path):
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["evaluate"]["reference"] = "nosuch"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    names = ", ".join(params["generate"]["predictors"])
    line = one_line(run(tmp_path, "nep", "config"))
    assert line == f"params.yaml: evaluate.reference: 'nosuch' is not one of generate.predictors (have: {names})", line
    params["evaluate"]["reference"] = "identiti"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert one_line(run(tmp_path, "nep", "config")).endswith("; did you mean 'identity'?")
    # every stage checks the whole file: none starts work
    assert "evaluate.reference" in one_line(run(tmp_path, "stages.split"))
    params["evaluate"]["reference"] = "identity"
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert run(tmp_path, "nep", "config").returncode == 0


def test_the_config_check_refuses_min_confidence_for_no_predictor_or_above_zero(tmp_path):
    """evaluate.min_confidence is checked with the rest of the file, not when evaluate reaches it."""
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["evaluate"]["min_confidence"] = {"finetuned": -0.5, "finetune": -0.5}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    line = one_line(run(tmp_path, "stages.split"))
    assert line.startswith("split: params.yaml: evaluate.min_confidence: 'finetune' is not one of generate"), line
    assert line.endswith("; did you mean 'finetuned'?"), line
    params["evaluate"]["min_confidence"] = {"finetuned": 0.5}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    line = one_line(run(tmp_path, "nep", "config"))
    assert line == ("params.yaml: evaluate.min_confidence.finetuned: 0.5 is above 0, and a mean token log-prob never "
                    "is (every answer would abstain): use a value at or below 0"), line
    params["evaluate"]["min_confidence"] = {"finetuned": -0.5}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert run(tmp_path, "nep", "config").returncode == 0
