"""The finetune stage end to end on the tiny-random smoke model, and under dvc repro / dvc exp run."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
import yaml
from conftest import copy_project, git, run_dvc

from nep.config.schema import Finetune, Process, section
from nep.core.examples import build_examples
from nep.util.errors import NepError
from nep.util.jsonl import write_jsonl
from stages.finetune import finetune

FAST = {"tiny": {"vocab_size": 400, "max_seq_length": 256, "max_steps": 3}, "gradient_accumulation_steps": 2}


def processed_examples(n: int) -> list[dict]:
    """Processed examples, built by the process stage from commits that grow a function by two lines."""
    commits = [
        {
            "commit": f"c{i}",
            "old_file": f"pkg/step_{i}.py",
            "new_file": f"pkg/step_{i}.py",
            "old_contents": f"def step_{i}(state):\n    state.count += {i}\n",
            "new_contents": f"def step_{i}(state):\n    state.tick()\n    state.count += {i}\n    return state\n",
            "subject": "Tick and return the state",
            "message": "Tick and return the state",
            "lang": "Python",
            "repos": "demo/repo",
            "timestamp": 1700000000 + i,
            "label": 1,
        }
        for i in range(n)
    ]
    drops: Counter = Counter()
    examples = list(build_examples(commits, drops))
    assert len(examples) == n, drops
    return examples


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.mark.slow  # seconds of CPU: the default suite stays under a minute of CPU
def test_stage_trains_saves_logs_and_reruns_to_the_same_bytes(tmp_path: Path):
    train_path = tmp_path / "train.jsonl"
    write_jsonl(train_path, processed_examples(12))
    with train_path.open("a") as f:
        f.write("{not json\n")
    out, metrics_dir, timing = tmp_path / "models", tmp_path / "metrics", tmp_path / "timing.json"
    run = {"train_path": train_path, "out_dir": out, "metrics_dir": metrics_dir, "timing_path": timing, "progress": False}
    metrics = finetune(section("finetune", FAST), **run)

    assert metrics["backend"] == "hf" and metrics["smoke_model"] is True
    assert metrics["examples"] == 13 and metrics["examples_used"] == 12
    assert metrics["dropped.malformed_json"] == 1 and metrics["examples_dropped"] == 1
    assert metrics["steps"] == 3 and metrics["train_loss"] > 0
    for name in ("adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "nep_finetune.json", "base/config.json"):
        assert (out / name).exists(), name
    assert not (out / "merged").exists()
    targets = json.loads((out / "adapter_config.json").read_text())["target_modules"]
    assert targets == sorted(targets)  # not PEFT's hash order: reruns give byte-identical outputs
    meta = json.loads((out / "nep_finetune.json").read_text())
    assert meta["base_model"] == "tiny-random" and meta["backend"] == "hf" and meta["params"]["lora_r"] == 16
    summary = json.loads((metrics_dir / "metrics.json").read_text())
    assert summary["train_loss"] == metrics["train_loss"] and summary["examples_used"] == 12
    curve = (metrics_dir / "plots" / "metrics" / "train_loss.tsv").read_text().splitlines()
    assert curve[0] == "step\ttrain_loss" and len(curve) == 1 + 3
    assert not (metrics_dir / "dvc.yaml").exists()  # DVCLive must not write a pipeline of its own
    # measured times go to the timing file only: none in the metrics, the curves or the model
    measured = json.loads(timing.read_text())
    assert measured["train_runtime"] > 0 and measured["train_tokens_per_s"] > 0 and measured["wall_s"] > 0
    tracked = {**_tree(out), **{f"metrics/{k}": v for k, v in _tree(metrics_dir).items()}}
    for name, data in tracked.items():
        if name.endswith((".json", ".tsv", ".md")):
            text = data.decode()
            assert not any(word in text for word in ("runtime", "per_second", "timestamp", "wall_s", "tokens_per_s")), name
    # the same inputs and params give the same bytes
    finetune(section("finetune", FAST), **run)
    assert {**_tree(out), **{f"metrics/{k}": v for k, v in _tree(metrics_dir).items()}} == tracked


def test_stage_fails_before_paying_with_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import nep.util.device
    import stages.finetune as stage

    if nep.util.device.cuda_available():
        pytest.skip("checks the CPU message")
    monkeypatch.chdir(tmp_path)
    write_jsonl(tmp_path / "data/split/train.jsonl", processed_examples(1))
    monkeypatch.setattr(stage, "load_section", lambda name: Finetune(backend="unsloth") if name == "finetune" else Process())
    with pytest.raises(NepError) as e:
        stage.main()
    assert str(e.value).startswith("finetune.backend: unsloth needs a CUDA GPU") and "\n" not in str(e.value)
    assert not (tmp_path / "models").exists()


def test_stage_merges_on_request_and_loader_reads_it(tmp_path: Path):
    import torch
    from transformers import AutoModelForCausalLM

    from nep.train.model import load_finetuned

    train_path = tmp_path / "train.jsonl"
    write_jsonl(train_path, processed_examples(4))
    out = tmp_path / "models"
    finetune(section("finetune", {**FAST, "merge": True}), train_path=train_path, out_dir=out, metrics_dir=tmp_path / "m",
             timing_path=tmp_path / "t.json", progress=False)
    model, tokenizer = load_finetuned(out, device="cpu")
    merged = AutoModelForCausalLM.from_pretrained(out / "merged").eval()
    enc = tokenizer(processed_examples(1)[0]["prompt"], return_tensors="pt")
    with torch.no_grad():
        assert torch.allclose(model(**enc).logits, merged(**enc).logits, atol=1e-4)


def test_stage_rejects_bad_input(tmp_path: Path):
    from nep.util.errors import NepError

    with pytest.raises(NepError, match="not found"):
        finetune(Finetune(), train_path=tmp_path / "missing.jsonl", out_dir=tmp_path / "o", metrics_dir=tmp_path / "m")
    (tmp_path / "empty.jsonl").write_text("")
    with pytest.raises(NepError, match="no training examples"):
        finetune(Finetune(), train_path=tmp_path / "empty.jsonl", out_dir=tmp_path / "o", metrics_dir=tmp_path / "m")
    with pytest.raises(ValueError, match=r"finetune\.epoch: unknown key \(did you mean finetune\.epochs"):
        section("finetune", {"epoch": 3})


_dvc = run_dvc  # conftest's one way of running dvc


@pytest.mark.slow
def test_dvc_repro_and_exp_run(tmp_path: Path):
    """`dvc repro` and `dvc exp run` of the finetune stage (alone: the copy's dvc.yaml keeps only it,
    so its train.jsonl is a plain file); `dvc exp show` lists its final values and `dvc plots show`
    draws its loss curve."""
    project = copy_project(tmp_path / "project")
    pipeline = yaml.safe_load((project / "dvc.yaml").read_text())
    (project / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"finetune": pipeline["stages"]["finetune"]}}))
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["finetune"]["tiny"].update(FAST["tiny"])
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    write_jsonl(project / "data/split/train.jsonl", processed_examples(6))
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "project")

    _dvc(project, "repro")
    assert json.loads((project / "metrics/finetune/metrics.json").read_text())["steps"] == 3
    assert "finetune" in (project / "dvc.lock").read_text()

    _dvc(project, "exp", "run", "-S", "finetune.tiny.max_steps=2", "-n", "two-steps")
    exps = json.loads(_dvc(project, "exp", "show", "--json"))
    text = json.dumps(exps)
    assert "two-steps" in text and '"train_loss"' in text and '"steps": 2' in text
    plots = json.loads(_dvc(project, "plots", "show", "--json", "metrics/finetune/plots/metrics"))
    assert "metrics/finetune/plots/metrics/train_loss.tsv" in plots["data"] and not plots.get("errors")
