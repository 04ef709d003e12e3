"""The evaluate stage on generation and judgment files written here, and its dvc plots."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, git, run_dvc

from nep.jsonl import InputError, write_jsonl
from nep.prompts import build_prompt
from stages import evaluate as evaluate_stage
from stages.evaluate import evaluate

ORIGINAL = "".join(f"value_{i} = {i}\n" for i in range(8))
CURRENT = ORIGINAL.replace("value_1 = 1\n", "value_1 = 1\nhistory = 1\n")
NEXT = CURRENT.replace("value_5 = 5\n", "value_5 = 5\nnext_edit = 5\n")


def generation(rid: str, output: str, *, language: str = "Python", extracted: bool = True) -> dict:
    return {
        "id": rid,
        "prompt": build_prompt(ORIGINAL, CURRENT, path="a.py"),
        "output": output if extracted else "",
        "ground_truth": NEXT,
        "language": language,
        "latency_s": 0.5,
        "output_tokens": 20,
        "raw_output": output,
        "extracted": extracted,
    }


def write_predictor(root: Path, name: str, generations: list[dict], judgments: list[dict] | None) -> None:
    write_jsonl(root / "data/generate" / f"{name}.jsonl", generations)
    if judgments is not None:
        write_jsonl(root / "data/judge" / f"{name}.jsonl", judgments)


def run(root: Path, predictors: list[str]) -> dict:
    return evaluate(
        predictors=predictors,
        generate_dir=root / "data/generate",
        judge_dir=root / "data/judge",
        metrics_path=root / "metrics/evaluate.json",
        tables_dir=root / "metrics/evaluate",
    )


@pytest.fixture
def two_predictors(tmp_path: Path) -> Path:
    good = [
        generation("a", NEXT),
        generation("b", NEXT, language="Go"),
        generation("c", CURRENT.replace("value_5 = 5\n", "value_5 = 5\nother = 5\n"), language="Go"),
        generation("d", "", extracted=False),
    ]
    write_predictor(
        tmp_path,
        "finetuned",
        good,
        [{"id": "a", "judgment": 1, "reason": "ok"}, {"id": "b", "judgment": 1, "reason": "ok"},
         {"id": "c", "judgment": 0, "reason": "no"}, {"id": "d", "judgment": None, "reason": "timeout"}],
    )
    same = [generation(i, CURRENT, language=lang) for i, lang in (("a", "Python"), ("b", "Go"))]
    write_predictor(tmp_path, "identity", same, [{"id": i, "judgment": 0, "reason": "no"} for i in "ab"])
    return tmp_path


def test_scores_each_predictor_into_flat_metrics_and_tables(two_predictors: Path):
    metrics = run(two_predictors, ["finetuned", "identity"])
    written = json.loads((two_predictors / "metrics/evaluate.json").read_text())
    assert written == metrics
    assert all(isinstance(v, int | float) for v in metrics.values())  # flat scalars
    assert metrics["finetuned.n"] == 4
    assert metrics["finetuned.exact_match"] == 0.5
    assert metrics["finetuned.position_match"] == 0.75
    assert metrics["finetuned.unextractable_rate"] == 0.25
    assert metrics["finetuned.judged"] == 3 and metrics["finetuned.judge_null"] == 1
    assert metrics["finetuned.llm_judge"] == pytest.approx(2 / 3)
    assert metrics["finetuned.agreement.exact_match"] == 1.0
    assert metrics["finetuned.mean_latency_s"] == 0.5
    assert metrics["identity.exact_match"] == 0.0 and metrics["identity.partial_match"] == 0.0
    assert metrics["identity.agreement.partial_match"] == 1.0

    rows = json.loads((two_predictors / "metrics/evaluate/predictors.json").read_text())["rows"]
    assert [r["predictor"] for r in rows] == ["finetuned", "identity"]
    langs = json.loads((two_predictors / "metrics/evaluate/languages.json").read_text())["rows"]
    by_key = {(r["predictor"], r["language"]): r for r in langs}
    assert set(by_key) == {("finetuned", "Go"), ("finetuned", "Python"), ("identity", "Go"), ("identity", "Python")}
    assert by_key["finetuned", "Go"]["n"] == 2 and by_key["finetuned", "Go"]["exact_match"] == 0.5
    assert by_key["finetuned", "Python"]["group"] == "Python / finetuned"


def test_id_mismatches_are_counted(tmp_path: Path):
    write_predictor(
        tmp_path,
        "p",
        [generation("a", NEXT), generation("b", NEXT)],
        [{"id": "a", "judgment": 1, "reason": ""}, {"id": "zzz", "judgment": 0, "reason": ""}],
    )
    metrics = run(tmp_path, ["p"])
    assert metrics["p.judge_missing"] == 1 and metrics["p.judge_unmatched"] == 1
    assert metrics["p.judged"] == 1


def test_judgments_of_other_generations_are_an_error(tmp_path: Path):
    write_predictor(tmp_path, "p", [generation("a", NEXT)], [{"id": "old", "judgment": 1, "reason": ""}])
    with pytest.raises(InputError, match=r"p\.jsonl: no judgment id matches"):
        run(tmp_path, ["p"])


def test_missing_judge_file_names_it(tmp_path: Path):
    write_predictor(tmp_path, "p", [generation("a", NEXT)], None)
    with pytest.raises(InputError, match=r"judge/p\.jsonl: judgment file not found"):
        run(tmp_path, ["p"])


def test_empty_generations_are_an_error(tmp_path: Path):
    write_predictor(tmp_path, "p", [], [])
    with pytest.raises(InputError, match=r"generate/p\.jsonl: no usable generation records"):
        run(tmp_path, ["p"])
    with pytest.raises(InputError, match="no predictors"):
        run(tmp_path, [])


def test_bad_records_are_dropped_and_counted(tmp_path: Path):
    broken = generation("b", NEXT)
    broken["prompt"] = "no markers here"
    write_predictor(
        tmp_path,
        "p",
        [generation("a", NEXT), {"id": "x", "output": "?"}, broken],
        [{"id": "a", "judgment": "yes", "reason": ""}],
    )
    with (tmp_path / "data/generate/p.jsonl").open("a") as f:
        f.write("{not json\n")
    metrics = run(tmp_path, ["p"])
    assert metrics["p.n"] == 1
    assert metrics["p.dropped.missing_field"] == 1
    assert metrics["p.dropped.bad_prompt"] == 1
    assert metrics["p.dropped.malformed_json"] == 1
    assert metrics["p.dropped.bad_judgment"] == 1 and metrics["p.judge_null"] == 1


def test_duplicate_generation_id_is_an_error(tmp_path: Path):
    write_predictor(tmp_path, "p", [generation("a", NEXT), generation("a", NEXT)], [])
    with pytest.raises(InputError, match="duplicate generation id a"):
        run(tmp_path, ["p"])


def test_main_reads_predictors_and_context_from_params(two_predictors: Path, monkeypatch, capsys):
    params = {
        "generate": {"predictors": {"identity": {"kind": "identity", "needs": "x"}}},
        "evaluate": {"context_lines": 2},
    }
    (two_predictors / "params.yaml").write_text(yaml.safe_dump(params))
    monkeypatch.chdir(two_predictors)
    evaluate_stage.main()
    metrics = json.loads(Path("metrics/evaluate.json").read_text())
    assert {k.split(".")[0] for k in metrics} == {"identity"}
    assert "identity: n=2" in capsys.readouterr().out


@pytest.mark.slow
def test_dvc_plots_show_draws_every_declared_plot(two_predictors: Path):
    """dvc.yaml's top-level plots render from the tables evaluate writes (in a scratch DVC repo)."""
    root = two_predictors
    git(root, "init", "-q")
    shutil.copy(REPO_ROOT / "dvc.yaml", root / "dvc.yaml")
    shutil.copy(REPO_ROOT / "params.yaml", root / "params.yaml")
    (root / ".dvc").mkdir()
    shutil.copytree(REPO_ROOT / ".dvc/plots", root / ".dvc/plots")
    run(root, ["finetuned", "identity"])
    data = json.loads(run_dvc(root, "plots", "show", "--json"))["data"]
    declared = [next(iter(p)) for p in yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["plots"]]
    evaluate_plots = [p for p in declared if "predictor" in p or "language" in p]
    assert evaluate_plots and set(evaluate_plots) <= set(data)
    for name in evaluate_plots:
        (plot,) = data[name]
        values = plot["content"]["data"]["values"]
        assert len(values) == (2 if "predictor" in name else 4), name
        assert plot["content"]["encoding"]["x"]["scale"] == {"domain": [0, 1]}
