"""Presets: each is a whole configuration (the committed default + the preset), fits the params
schema, never mixes with workspace state, and never discards uncommitted edits unless forced."""

from __future__ import annotations

import copy
import re
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, git, run_dvc

from nep.config.presets import (
    apply_preset,
    check_preset,
    deep_merge,
    load_preset,
    main,
    set_args,
)
from nep.util.errors import NepError

PRESETS = sorted(p.stem for p in (REPO_ROOT / "presets").glob("*.yaml"))
PARAMS = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
LOCAL = "http://127.0.0.1:8000/v1"


def merged(name: str, base: dict | None = None) -> dict:
    return deep_merge(copy.deepcopy(base or PARAMS), load_preset(name, REPO_ROOT / "presets"))


def test_there_are_presets():
    assert "paper" in PRESETS


@pytest.mark.parametrize("name", PRESETS)
def test_preset_fits_params_schema(name: str):
    preset = load_preset(name, REPO_ROOT / "presets")
    assert set(preset) <= set(PARAMS), "a preset only sets params.yaml sections"
    assert check_preset(preset, PARAMS) == []
    text = (REPO_ROOT / "presets" / f"{name}.yaml").read_text()
    assert text.startswith("#") and f"nep presets {name}" in text, "document how to apply it"


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


def test_check_preset_reports_problems_by_key():
    errors = check_preset(
        {"filter": {"max_chunk_lines": "five", "min_chunk": 2}, "nope": {},
         "generate": {"predictors": {"new": {"kind": "hf"}}}},
        PARAMS,
    )
    assert "filter.max_chunk_lines: 'five' is not an integer" in errors
    assert "filter.min_chunk: unknown key (did you mean filter.min_chunks?)" in errors
    assert any(e.startswith("nope: unknown key") for e in errors)
    assert any(e.startswith("generate.predictors.new") for e in errors)


def test_predictor_entries_are_replaced_whole():
    """A preset's predictor entry never inherits options of the entry it replaces."""
    base = copy.deepcopy(PARAMS)
    base["generate"]["predictors"]["x"] = {"kind": "hf", "model": "m", "device": "cpu", "needs": "a"}
    out = deep_merge(base, {"generate": {"predictors": {"x": {"kind": "identity", "needs": "a"}}}})
    assert out["generate"]["predictors"]["x"] == {"kind": "identity", "needs": "a"}


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


def edit(path: Path, section: str, key: str, value) -> None:
    """Set `section.key: value` in params.yaml's text, keeping its comments."""
    text = path.read_text()
    start = text.index(f"\n{section}:")
    pattern = re.compile(rf"^(  {key}: )(\S+)", re.M)
    match = pattern.search(text, start)
    assert match, (section, key)
    path.write_text(text[: match.start(2)] + str(value) + text[match.end(2) :])


def test_apply_merges_keeps_comments_and_offline_restores(project: Path, monkeypatch):
    params_path = project / "params.yaml"
    before = params_path.read_text()
    apply_preset("paper", params_path, project / "presets")
    after = params_path.read_text()
    assert yaml.safe_load(after) == merged("paper")
    assert "# nep's offline default" in after and "# git | jsonl | hf" in after  # comments survive
    monkeypatch.chdir(project)
    main(["offline"])  # the workspace holds the paper preset as it is: nothing is lost, no --force
    assert params_path.read_text() == before
    with pytest.raises(SystemExit, match="no such preset"):
        main(["nonexistent"])


def test_a_preset_does_not_mix_with_workspace_edits(project: Path, monkeypatch, capsys):
    """A local test endpoint left in label/judge is named, not carried into the paper's run."""
    params_path = project / "params.yaml"
    edit(params_path, "label", "base_url", LOCAL)
    edit(params_path, "judge", "base_url", LOCAL)
    edited = params_path.read_text()
    monkeypatch.chdir(project)
    with pytest.raises(SystemExit) as info:
        main(["paper"])
    message = str(info.value)
    assert f"label.base_url: '{LOCAL}' (uncommitted) → 'https://api.openai.com/v1'" in message
    assert "judge.base_url" in message and "--force" in message
    assert "filter.edit_types" not in message  # a key the user did not edit is not listed
    assert params_path.read_text() == edited  # nothing written
    main(["paper", "--force"])
    assert yaml.safe_load(params_path.read_text()) == merged("paper")  # the committed endpoint


def test_restoring_the_default_refuses_over_uncommitted_edits(project: Path, monkeypatch):
    params_path = project / "params.yaml"
    edit(params_path, "filter", "max_chunk_lines", 7)
    monkeypatch.chdir(project)
    with pytest.raises(SystemExit, match=r"filter\.max_chunk_lines: 7 \(uncommitted\) → 5"):
        main(["offline"])
    assert "max_chunk_lines: 7" in params_path.read_text()
    params_path.write_text(params_path.read_text() + "# a note\n")
    with pytest.raises(NepError, match="max_chunk_lines"):
        apply_preset("offline", params_path, project / "presets")
    edit(params_path, "filter", "max_chunk_lines", 5)  # only the comment differs now: no value is lost
    apply_preset("offline", params_path, project / "presets")
    assert params_path.read_text() == (REPO_ROOT / "params.yaml").read_text()


def test_a_layout_rewritten_by_dvc_exp_run_set_is_no_edit(project: Path):
    """`dvc exp run -S` rewrites params.yaml without its comments and in its own layout; a preset
    compares values, so it applies without --force (and brings the comments back)."""
    params_path = project / "params.yaml"
    params_path.write_text(yaml.safe_dump(yaml.safe_load(params_path.read_text()), sort_keys=False, width=200))
    assert "#" not in params_path.read_text()
    apply_preset("paper", params_path, project / "presets")
    assert yaml.safe_load(params_path.read_text()) == merged("paper")
    assert "# " in params_path.read_text()


def test_a_committed_edit_is_part_of_the_default(project: Path):
    params_path = project / "params.yaml"
    edit(params_path, "filter", "max_chunk_lines", 7)
    git(project, "commit", "-q", "-am", "wider chunks")
    apply_preset("paper", params_path, project / "presets")
    assert yaml.safe_load(params_path.read_text())["filter"]["max_chunk_lines"] == 7


def test_params_rewritten_by_dvc_still_fit(project: Path):
    """`dvc exp run -S` writes YAML 1.2 floats such as `1e-05`; they still read as floats."""
    from dvc.utils.hydra import apply_overrides

    apply_overrides(project / "params.yaml", ["finetune.embedding_learning_rate=0.00001"])
    assert "embedding_learning_rate: 1e-05" in (project / "params.yaml").read_text()
    apply_preset("paper", project / "params.yaml", project / "presets", force=True)


def test_set_args_give_dvc_exactly_the_preset(project: Path):
    """`dvc exp run -S` with the overrides turns any workspace into exactly the preset's params:
    workspace edits are set back, workspace-only keys removed (`~`), new keys added (`+`)."""
    from dvc.utils.hydra import apply_overrides

    workspace = copy.deepcopy(PARAMS)
    workspace["label"]["base_url"] = LOCAL
    workspace["generate"]["predictors"]["served"] = {"kind": "openai", "model": "m", "base_url": LOCAL,
                                                   "api_key_env": "", "needs": "data/split/test.jsonl"}
    (project / "params.yaml").write_text(yaml.safe_dump(workspace, sort_keys=False))
    args = set_args(merged("paper"), workspace)
    assert any(a.startswith("+generate.predictors.base=") for a in args)  # a new key needs `+`
    assert "~generate.predictors.served" in args
    apply_overrides(project / "params.yaml", args)
    assert yaml.safe_load((project / "params.yaml").read_text()) == merged("paper")


def test_set_args_command_refuses_over_uncommitted_edits(project: Path, monkeypatch, capsys):
    monkeypatch.chdir(project)
    main(["paper", "--set-args"])
    assert "-S " in capsys.readouterr().out
    edit(project / "params.yaml", "label", "base_url", LOCAL)
    with pytest.raises(SystemExit, match="label.base_url"):
        main(["paper", "--set-args"])


@pytest.mark.slow
def test_dvc_resolves_the_pipeline_under_each_preset(project: Path):
    """dvc.yaml's interpolation (foreach over predictors, per-predictor params) accepts each preset."""
    (project / ".dvc").mkdir()
    for name in PRESETS:
        apply_preset(name, project / "params.yaml", project / "presets", force=True)
        out = run_dvc(project, "stage", "list")
        for predictor in merged(name)["generate"]["predictors"]:
            assert f"generate@{predictor}" in out and f"judge@{predictor}" in out


def test_a_preset_removes_a_predictor_with_null():
    out = deep_merge(copy.deepcopy(PARAMS), {"generate": {"predictors": {"identity": None}}})
    assert "identity" not in out["generate"]["predictors"]
    assert set(out["generate"]["predictors"]) == set(PARAMS["generate"]["predictors"]) - {"identity"}
