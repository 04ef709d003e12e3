"""The generate stage: records, metrics, ordering, batching, bad input, and its dvc wiring."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, copy_project, git
from test_predictors import examples, make_example

from nep.jsonl import InputError, read_jsonl, write_jsonl
from nep.prompts import parse_prompt
from stages.generate import generate

RECORD_FIELDS = {
    "id", "prompt", "output", "ground_truth", "language", "latency_s", "output_tokens",
    "raw_output", "extracted", "extraction",
}


@pytest.fixture
def test_set(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "split" / "test.jsonl"
    write_jsonl(path, examples())
    return path


def run(tmp_path: Path, test_set: Path, name: str, config: dict, **kw) -> tuple[list[dict], dict]:
    metrics = generate(
        predictor=name,
        predictors={name: config},
        test_path=test_set,
        out_dir=tmp_path / "out",
        metrics_dir=tmp_path / "metrics",
        **kw,
    )
    records = list(read_jsonl(tmp_path / "out" / f"{name}.jsonl"))
    assert json.loads((tmp_path / "metrics" / f"{name}.json").read_text()) == metrics
    return records, metrics


def test_identity_records_and_metrics(tmp_path, test_set):
    records, metrics = run(tmp_path, test_set, "identity", {"kind": "identity", "needs": str(test_set)})
    exs = examples()
    assert [r["id"] for r in records] == [e["id"] for e in exs]  # test-set order kept
    for r, e in zip(records, exs):
        assert set(r) == RECORD_FIELDS
        assert r["output"] == r["raw_output"] == e["current"] == parse_prompt(r["prompt"])["current"]
        assert (r["ground_truth"], r["language"], r["extracted"]) == (e["next"], e["language"], True)
    assert metrics["examples"] == len(exs) and metrics["extracted_rate"] == 1.0
    assert metrics["extraction.direct"] == len(exs)


def test_propagate_counts_its_rules(tmp_path, test_set):
    records, metrics = run(tmp_path, test_set, "propagate", {"kind": "propagate"}, batch_size=2)
    assert sum(v for k, v in metrics.items() if k.startswith("propagate_rule.")) == len(records)
    assert records[-1]["output"] != records[-1]["raw_output"].replace("value_4: int", "value_4")


def test_tiny_model_batched_equals_one_at_a_time(tmp_path, test_set):
    from nep.tiny import build_tiny_model

    model = build_tiny_model([e["text"] for e in examples()], tmp_path / "tiny", vocab_size=400, hidden_size=32)
    config = {"kind": "hf", "model": str(model), "device": "cpu"}
    one, _ = run(tmp_path / "one", test_set, "tiny", config, batch_size=1, max_new_tokens=8)
    many, metrics = run(tmp_path / "many", test_set, "tiny", config, batch_size=4, max_new_tokens=8)
    assert [r["raw_output"] for r in one] == [r["raw_output"] for r in many]
    assert [r["output"] for r in one] == [r["output"] for r in many]
    assert metrics["output_tokens"] == sum(r["output_tokens"] for r in many) > 0
    assert metrics["tokens_per_s"] > 0 and metrics["mean_latency_s"] > 0
    assert metrics["extracted"] + metrics["unextracted"] == len(many)


def test_unextractable_outputs_are_counted(tmp_path, test_set, monkeypatch):
    from nep.predictors import OpenAIPredictor, Prediction

    def fake_predict(self, batch, *, max_new_tokens):
        return [Prediction("<next_version>\nok\n</next_version>" if i % 2 else "no answer", 3, 0.5) for i in range(len(batch))]

    monkeypatch.setattr(OpenAIPredictor, "predict", fake_predict)
    records, metrics = run(tmp_path, test_set, "api", {"kind": "openai", "model": "m"}, batch_size=10)
    assert metrics["unextracted"] == sum(not r["extracted"] for r in records) > 0
    assert all(r["output"] == "" for r in records if not r["extracted"])
    assert metrics["extraction.none"] == metrics["unextracted"]


def test_bad_input_names_file_and_record(tmp_path):
    path = tmp_path / "test.jsonl"
    good = make_example("a = 1\n", "a = 1\nb = 2\n", "a = 1\nb = 2\nc = 3\n")
    write_jsonl(path, [good, {"id": "broken", "prompt": "x"}])
    with pytest.raises(InputError, match=r"test\.jsonl: record 2 \(id 'broken'\) lacks .*next"):
        generate(predictor="i", predictors={"i": {"kind": "identity"}}, test_path=path, out_dir=tmp_path)
    with pytest.raises(KeyError, match="generate.predictors.nope"):
        generate(predictor="nope", predictors={"i": {"kind": "identity"}}, test_path=path, out_dir=tmp_path)


def test_dvc_yaml_wires_one_stage_per_predictor():
    dvc = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]["generate"]
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["generate"]
    assert dvc["foreach"] == "${generate.predictors}"
    deps = set(dvc["do"]["deps"])
    imported = {"nep/predictors.py", "nep/extract.py", "nep/propagate.py", "nep/prompts.py", "nep/edits.py",
                "nep/jsonl.py", "nep/training.py", "nep/tiny.py", "nep/llm.py", "stages/generate.py"}
    assert imported <= deps and "${item.needs}" in deps
    for name, config in params["predictors"].items():
        assert config["kind"] in {"finetuned", "identity", "propagate", "hf", "vllm", "openai"}, name
        assert config.get("needs"), f"generate.predictors.{name} needs a `needs` path"


@pytest.mark.slow
def test_cli_through_dvc(tmp_path, test_set):
    project = copy_project(tmp_path / "project")
    data = project / "data" / "split"
    data.mkdir(parents=True)
    shutil.copy(test_set, data / "test.jsonl")
    env = {**os.environ, "PYTHONPATH": str(project)}
    git(project, "init", "-q")
    for name in ("identity", "propagate"):
        done = subprocess.run(["dvc", "repro", "-s", f"generate@{name}"], cwd=project, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        records = list(read_jsonl(project / "data" / "generate" / f"{name}.jsonl"))
        assert len(records) == len(examples())
        assert json.loads((project / "metrics" / "generate" / f"{name}.json").read_text())["examples"] == len(records)
    result = subprocess.run([sys.executable, "-m", "stages.generate", "--predictor", "missing"], cwd=project,
                            env=env, capture_output=True, text=True)
    assert result.returncode != 0 and "generate.predictors.missing" in result.stderr
