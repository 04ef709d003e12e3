"""Presets: every preset fits params.yaml and the components that read it; applying one works."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, git, run_dvc

from nep.presets import PresetError, apply_preset, check_preset, deep_merge, load_preset, main, set_args

PRESETS = sorted(p.stem for p in (REPO_ROOT / "presets").glob("*.yaml"))
PARAMS = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())


def merged(name: str) -> dict:
    return deep_merge(copy.deepcopy(PARAMS), load_preset(name, REPO_ROOT / "presets"))


def test_there_are_presets():
    assert "paper" in PRESETS


@pytest.mark.parametrize("name", PRESETS)
def test_preset_fits_params_schema(name: str):
    preset = load_preset(name, REPO_ROOT / "presets")
    assert set(preset) <= set(PARAMS), "a preset only sets params.yaml sections"
    assert check_preset(preset, PARAMS) == []
    text = (REPO_ROOT / "presets" / f"{name}.yaml").read_text()
    assert text.startswith("#") and f"python -m nep.presets {name}" in text, "document how to apply it"


@pytest.mark.parametrize("name", PRESETS)
def test_preset_builds_every_component(name: str):
    """The merged params construct the real config objects (unknown options raise there)."""
    from nep.llm import backend_config
    from nep.predictors import build_predictor
    from nep.training import FinetuneConfig

    params = merged(name)
    FinetuneConfig.from_params(params["finetune"])
    for predictor, config in params["generate"]["predictors"].items():
        build_predictor(predictor, config)
    for stage in ("label", "judge"):
        if params[stage]["backend"] == "openai":
            assert backend_config(params[stage])["model"]


def test_paper_preset_is_the_papers_configuration():
    p = merged("paper")
    assert p["ingest"]["source"] == "hf" and p["ingest"]["hf"]["dataset"] == "bigcode/commitpackft"
    assert sorted(p["ingest"]["languages"]) == sorted(["Python", "Java", "Go", "C", "C++", "JavaScript", "TypeScript"])
    assert p["filter"]["edit_types"] == ["add"]
    assert (p["label"]["backend"], p["label"]["model"]) == ("openai", "gpt-4o-mini")
    assert (p["judge"]["backend"], p["judge"]["model"]) == ("openai", "gpt-4.1-mini")
    ft = p["finetune"]
    assert (ft["backend"], ft["base_model"]) == ("unsloth", "Qwen/Qwen2.5-Coder-7B")
    assert (ft["lora_r"], ft["lora_alpha"], ft["lora_dropout"]) == (16, 16, 0.0)
    assert (ft["learning_rate"], ft["epochs"], ft["gradient_accumulation_steps"]) == (1e-4, 2, 4)
    kinds = {name: c["kind"] for name, c in p["generate"]["predictors"].items()}
    assert kinds["finetuned"] == "vllm" and kinds["base"] == "vllm"
    assert ft["merge"] and p["generate"]["predictors"]["finetuned"]["model"] == "models/finetune/merged"


SCHEMA = {
    "a": {"n": 1, "x": 0.5, "flag": False, "name": "s", "items": [1], "maybe": None},
    "generate": {"predictors": {"p": {"kind": "identity", "needs": "f"}}},
}


def test_check_preset_reports_unknown_keys_and_wrong_types():
    errors = check_preset(
        {
            "a": {"n": "one", "x": 1, "flag": 1, "items": "no", "maybe": [1], "typo": 2},
            "nope": {},
            "generate": {"predictors": {"new": {"kind": "hf"}, "p": {"kind": "hf"}}},
        },
        SCHEMA,
    )
    assert errors == [
        "a.n: str, but params.yaml has int",
        "a.flag: int, but params.yaml has bool",
        "a.items: str, but params.yaml has list",
        "a.typo: not in params.yaml",
        "nope: not in params.yaml",
        "generate.predictors.new: needs a mapping with kind, needs",
    ]  # an int where a float is expected is fine; null defaults take anything; `p` keeps its needs


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A git repository holding this project's params.yaml, dvc.yaml and presets, committed."""
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    shutil.copytree(REPO_ROOT / "presets", tmp_path / "presets")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "init")
    return tmp_path


def test_apply_merges_keeps_comments_and_offline_restores(project: Path, monkeypatch):
    params_path = project / "params.yaml"
    before = params_path.read_text()
    apply_preset("paper", params_path, project / "presets")
    after = params_path.read_text()
    assert yaml.safe_load(after) == merged("paper")
    assert "# nep's offline default" in after and "# git | jsonl | hf" in after  # comments survive
    monkeypatch.chdir(project)
    main(["offline"])
    assert params_path.read_text() == before
    with pytest.raises(PresetError, match="no such preset"):
        main(["nonexistent"])


def test_params_rewritten_by_dvc_still_fit(project: Path):
    """`dvc exp run -S` writes YAML 1.2 floats such as `1e-05`; they still read as floats."""
    from dvc.utils.hydra import apply_overrides

    apply_overrides(project / "params.yaml", ["finetune.embedding_learning_rate=0.00001"])
    assert "embedding_learning_rate: 1e-05" in (project / "params.yaml").read_text()
    apply_preset("paper", project / "params.yaml", project / "presets")  # no "params.yaml has str"


def test_set_args_give_dvc_the_same_params(project: Path, capsys):
    """`dvc exp run -S` with the printed overrides yields exactly the params `apply` writes."""
    from dvc.utils.hydra import apply_overrides

    args = set_args(load_preset("paper", project / "presets"), PARAMS)
    assert any(a.startswith("+generate.predictors.base=") for a in args)  # a new key needs `+`
    apply_overrides(project / "params.yaml", args)
    assert yaml.safe_load((project / "params.yaml").read_text()) == merged("paper")


@pytest.mark.slow
def test_dvc_resolves_the_pipeline_under_each_preset(project: Path):
    """dvc.yaml's interpolation (foreach over predictors, per-predictor params) accepts each preset."""
    (project / ".dvc").mkdir()
    for name in PRESETS:
        apply_preset(name, project / "params.yaml", project / "presets")
        out = run_dvc(project, "stage", "list")
        for predictor in merged(name)["generate"]["predictors"]:
            assert f"generate@{predictor}" in out and f"judge@{predictor}" in out
