"""The generate stage and nep.predictors.runner: records, metrics, timing, ordering, resuming a killed
run, bad input, and the dvc wiring."""

from __future__ import annotations

import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, copy_project, git, make_example
from fake_openai import FakeOpenAI
from predictors.test_predictors import examples

from nep.core.prompts import parse_prompt
from nep.predictors import runner as generation
from nep.predictors.base import Prediction, Settings
from nep.predictors.baselines import IdentityPredictor
from nep.predictors.runner import Checkpoint, checkpoint_dir, generate
from nep.util.errors import NepError
from nep.util.jsonl import read_jsonl, write_jsonl

RECORD_FIELDS = {
    "id", "prompt", "output", "ground_truth", "language", "output_tokens", "raw_output", "extracted",
    "extraction", "path", "template_ground_truth",
}


@pytest.fixture(autouse=True)
def cache(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def test_set(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "split" / "test.jsonl"
    write_jsonl(path, examples())
    return path


def run(root: Path, test_set: Path, name: str, entry: dict, *, max_new_tokens: int = 8, batch_size: int = 8,
        **kw) -> tuple[list[dict], dict]:
    metrics = generate(
        name, entry, Settings.of(max_new_tokens=max_new_tokens, batch_size=batch_size, threads=1), test_path=test_set,
        out_path=root / "out" / f"{name}.jsonl", metrics_path=root / "metrics" / f"{name}.json",
        timing_path=root / "timing" / f"{name}.json", progress=False, **kw,
    )
    records = list(read_jsonl(root / "out" / f"{name}.jsonl"))
    assert json.loads((root / "metrics" / f"{name}.json").read_text()) == metrics
    return records, metrics


def test_identity_records_metrics_and_timing(tmp_path, test_set):
    records, metrics = run(tmp_path, test_set, "identity", {"kind": "identity", "needs": str(test_set)})
    exs = examples()
    assert [r["id"] for r in records] == [e["id"] for e in exs]  # test-set order kept
    for r, e in zip(records, exs, strict=True):
        assert set(r) == RECORD_FIELDS  # no timing in a record
        assert r["output"] == r["raw_output"] == e["current"] == parse_prompt(r["prompt"])["current"]
        assert (r["ground_truth"], r["language"], r["extracted"], r["path"]) == (e["next"], e["language"], True, e["path"])
        assert r["template_ground_truth"] == e["completion"] == e["next"] + "\n"
    assert metrics["examples"] == len(exs) and metrics["extracted_rate"] == 1.0
    assert metrics["extraction.direct"] == len(exs)
    assert not any("latency" in k or "wall" in k or "per_s" in k for k in metrics)
    timing = json.loads((tmp_path / "timing" / "identity.json").read_text())
    assert {"wall_s", "mean_latency_s", "tokens_per_s"} <= set(timing)
    assert (timing["examples_generated"], timing["examples_resumed"]) == (len(exs), 0)
    assert not list(checkpoint_dir().glob("identity.*"))  # removed once the records are written


def test_same_inputs_give_the_same_bytes(tmp_path, test_set):
    entry = {"kind": "propagate", "needs": str(test_set)}
    run(tmp_path / "a", test_set, "propagate", entry)
    run(tmp_path / "b", test_set, "propagate", entry, batch_size=2)
    for rel in ("out/propagate.jsonl", "metrics/propagate.json"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes()


def test_propagate_counts_its_rules(tmp_path, test_set):
    records, metrics = run(tmp_path, test_set, "propagate", {"kind": "propagate"}, batch_size=2)
    assert sum(v for k, v in metrics.items() if k.startswith("propagate_rule.")) == len(records)
    assert records[-1]["output"] != records[-1]["raw_output"].replace("value_4: int", "value_4")


@pytest.mark.slow  # ~10 s on a loaded 2-core machine; test_predictors checks the same on the predictor
def test_tiny_model_batched_equals_one_at_a_time(tmp_path, test_set):
    from nep.train.tiny import build_tiny_model

    model = build_tiny_model([e["text"] for e in examples()], tmp_path / "tiny", vocab_size=400, hidden_size=32)
    entry = {"kind": "hf", "model": str(model), "device": "cpu"}
    one, _ = run(tmp_path / "one", test_set, "tiny", entry, batch_size=1)
    many, metrics = run(tmp_path / "many", test_set, "tiny", entry, batch_size=4)
    assert one == many
    assert metrics["output_tokens"] == sum(r["output_tokens"] for r in many) > 0
    assert metrics["extracted"] + metrics["unextracted"] == len(many)
    assert json.loads((tmp_path / "many" / "timing" / "tiny.json").read_text())["tokens_per_s"] > 0


def test_unextractable_outputs_are_counted(tmp_path, test_set, monkeypatch):
    from nep.predictors.openai import OpenAIPredictor

    def fake_predict(self, exs, todo, settings):
        yield [(i, Prediction("<next_version>\nok\n</next_version>" if i % 2 else "no answer", 3)) for i in todo]

    monkeypatch.setattr(OpenAIPredictor, "predict", fake_predict)
    records, metrics = run(tmp_path, test_set, "api", {"kind": "openai", "model": "m"})
    assert metrics["unextracted"] == sum(not r["extracted"] for r in records) > 0
    assert all(r["output"] == "" for r in records if not r["extracted"])
    assert metrics["extraction.none"] == metrics["unextracted"]


def test_openai_run_reports_llm_accounting_and_no_request_lines(tmp_path, test_set, caplog):
    answer = "<next_version>\nx = 1\n</next_version>"
    with FakeOpenAI(default_answer=answer) as server, caplog.at_level(logging.INFO):
        entry = {"kind": "openai", "model": "m", "base_url": server.url, "api_key_env": "", "concurrency": 3}
        records, metrics = run(tmp_path, test_set, "api", entry)
        again, metrics_again = run(tmp_path / "again", test_set, "api", entry)
    assert all(r["output"] == "x = 1\n" for r in records) and again == records
    assert metrics == metrics_again and metrics["failed"] == 0  # the metrics do not depend on the cache
    assert not any(k.startswith("llm.") for k in metrics)
    timing = json.loads((tmp_path / "timing" / "api.json").read_text())
    timing_again = json.loads((tmp_path / "again" / "timing" / "api.json").read_text())
    assert timing["llm.requests"] == len(records) and timing["llm.cache_hits"] == 0
    assert timing_again["llm.cache_hits"] == len(records)  # answers are cached across runs
    assert not [r for r in caplog.records if r.name.startswith(("httpx", "openai"))]


class Crash(RuntimeError):
    pass


def test_a_killed_run_resumes_without_redoing_answers(tmp_path, test_set, monkeypatch):
    """A predictor that dies after two batches; the rerun answers only what is left and writes the
    same bytes as an uninterrupted run."""
    entry = {"kind": "identity", "needs": str(test_set)}
    full, _ = run(tmp_path / "full", test_set, "identity", entry, batch_size=2)
    asked: list[list[int]] = []
    original = IdentityPredictor.predict

    def crashing(self, exs, todo, settings):
        asked.append(list(todo))
        for n, group in enumerate(original(self, exs, todo, settings)):
            if n == 2:
                raise Crash("killed")
            yield group

    monkeypatch.setattr(IdentityPredictor, "predict", crashing)
    with pytest.raises(Crash):
        run(tmp_path / "crash", test_set, "identity", entry, batch_size=2)
    assert not (tmp_path / "crash" / "out").exists()
    saved = list(checkpoint_dir().glob("identity.*.jsonl"))
    assert len(saved) == 1 and len(saved[0].read_text().splitlines()) == 1 + 4  # header + 2 batches
    asked.clear()

    def spying(self, exs, todo, settings):
        asked.append(list(todo))
        return original(self, exs, todo, settings)

    monkeypatch.setattr(IdentityPredictor, "predict", spying)
    run(tmp_path / "crash", test_set, "identity", entry, batch_size=2)
    assert len(asked[0]) == len(examples()) - 4  # the four saved answers are not redone
    assert (tmp_path / "crash" / "out" / "identity.jsonl").read_bytes() == (tmp_path / "full" / "out" / "identity.jsonl").read_bytes()
    timing = json.loads((tmp_path / "crash" / "timing" / "identity.json").read_text())
    assert (timing["examples_resumed"], timing["examples_generated"]) == (4, len(examples()) - 4)
    assert not saved[0].exists()


def test_a_torn_last_line_is_dropped_and_a_changed_input_starts_afresh(tmp_path, test_set):
    exs = examples()
    path = tmp_path / "ck.jsonl"
    ck = Checkpoint(path, "k1", exs)
    assert ck.load() == {}
    entries = [generation.answer_entry(i, exs[i], Prediction("x"), "direct") for i in (0, 1)]
    ck.append(entries)
    ck.close()
    with path.open("a") as f:
        f.write('{"i": 2, "id": "')  # a kill mid-line
    assert sorted(Checkpoint(path, "k1", exs).load()) == [0, 1]
    assert path.read_text().endswith("}\n")  # the torn line is gone before appending
    assert Checkpoint(path, "k2", exs).load() == {}  # another key: nothing reused
    key = generation.checkpoint_key({"kind": "identity"}, 8, test_set.read_bytes())
    assert key != generation.checkpoint_key({"kind": "identity"}, 16, test_set.read_bytes())
    assert key != generation.checkpoint_key({"kind": "identity"}, 8, test_set.read_bytes() + b"\n")
    assert key == generation.checkpoint_key({"kind": "identity", "needs": "elsewhere"}, 8, test_set.read_bytes())
    assert key == generation.checkpoint_key({"kind": "identity", "concurrency": 9}, 8, test_set.read_bytes())
    model = tmp_path / "model"
    model.mkdir()
    (model / "w.bin").write_bytes(b"1")
    for entry in ({"kind": "hf", "model": str(model)}, {"kind": "finetuned", "needs": str(model)}):
        before = generation.checkpoint_key(entry, 8, b"")
        (model / "w.bin").write_bytes(before.encode())  # a retrained model never resumes old answers
        assert generation.checkpoint_key(entry, 8, b"") != before


def test_bad_input_names_file_and_record(tmp_path):
    path = tmp_path / "test.jsonl"
    good = make_example("a = 1\n", "a = 1\nb = 2\n", "a = 1\nb = 2\nc = 3\n")
    write_jsonl(path, [good, {"id": "broken", "prompt": "x"}])
    with pytest.raises(NepError, match=r"test\.jsonl: record 2 \(id 'broken'\) lacks .*next"):
        run(tmp_path, path, "i", {"kind": "identity"})
    with pytest.raises(NepError, match=r"nothing\.jsonl: file not found"):
        run(tmp_path, tmp_path / "nothing.jsonl", "i", {"kind": "identity"})
    with pytest.raises(ValueError, match=r"generate\.predictors\.i\.kind"):
        run(tmp_path, path, "i", {"kind": "identiy"})


def test_missing_model_is_one_line_from_the_stage(tmp_path, test_set):
    project = tmp_path / "p"
    (project / "data" / "split").mkdir(parents=True)
    shutil.copy(test_set, project / "data" / "split" / "test.jsonl")
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    params["generate"]["predictors"] = {"gone": {"kind": "finetuned", "model": "models/none", "needs": "x"}}
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "HF_HUB_OFFLINE": "1"}
    for name, expect in (("gone", "generate.predictors.gone.model: models/none: no fine-tuned model"),
                         ("missing", "no generate.predictors.missing")):
        done = subprocess.run([sys.executable, "-m", "stages.generate", "--predictor", name], cwd=project,
                              env=env, capture_output=True, text=True)
        assert done.returncode != 0 and expect in done.stderr and "Traceback" not in done.stderr, done.stderr


def test_dvc_yaml_wires_one_stage_per_predictor():
    dvc = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]["generate"]
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())["generate"]
    assert dvc["foreach"] == "${generate.predictors}"
    deps = set(dvc["do"]["deps"])
    # code deps are checked against the imports by tests/config/test_config.py; the SFT loop is not one
    assert "nep/predictors" in deps and "nep/train/sft.py" not in deps
    assert "${item.needs}" in deps
    assert {"generate.max_new_tokens", "generate.batch_size", "generate.threads"} <= set(dvc["do"]["params"])
    # the checkpoint and timing are not outputs; the counts are a plain (not a `metrics`) output
    assert dvc["do"]["outs"] == ["data/generate/${key}.jsonl", {"metrics/generate/${key}.json": {"cache": False}}]
    from nep.predictors.kinds import check_predictor

    for name, config in params["predictors"].items():
        check_predictor(name, config)
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
        # the stage and the one before it: retry writes data/retry/<name>.json, which generate@<name> reads
        done = subprocess.run(["dvc", "repro", "-s", "retry", f"generate@{name}"], cwd=project, env=env,
                              capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        records = list(read_jsonl(project / "data" / "generate" / f"{name}.jsonl"))
        assert len(records) == len(examples())
        assert json.loads((project / "metrics" / "generate" / f"{name}.json").read_text())["examples"] == len(records)
        assert (project / "metrics" / "timing" / "generate" / f"{name}.json").exists()
    # a hybrid over identity's generations: DVC runs identity's stage first, and the hybrid answers as propagate
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["generate"]["predictors"]["hybrid"] = {"kind": "hybrid", "rule": "propagate",
                                                  "path": "data/generate/identity.jsonl",
                                                  "needs": "data/generate/identity.jsonl"}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    dag = subprocess.run(["dvc", "dag", "generate@hybrid"], cwd=project, env=env, capture_output=True, text=True)
    assert dag.returncode == 0 and "generate@identity" in dag.stdout, dag.stderr
    done = subprocess.run(["dvc", "repro", "-s", "retry", "generate@hybrid"], cwd=project, env=env,
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    hybrid = [r["output"] for r in read_jsonl(project / "data" / "generate" / "hybrid.jsonl")]
    assert hybrid == [r["output"] for r in read_jsonl(project / "data" / "generate" / "propagate.jsonl")]
    counts = json.loads((project / "metrics" / "generate" / "hybrid.json").read_text())
    assert counts["hybrid_source.rule"] + counts.get("hybrid_source.model", 0) == len(hybrid)
