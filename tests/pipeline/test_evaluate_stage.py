"""The evaluate stage on generation and judgment files written here: the headline and details
metrics, intervals and paired tests, the plot tables, bad input, and dvc plots."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, git, run_dvc

from nep.core.prompts import build_prompt
from nep.evaluate.evaluation import HEADLINE, MAIN_METRICS, evaluate
from nep.util import paths
from nep.util.errors import NepError
from nep.util.jsonl import write_jsonl
from stages import evaluate as evaluate_stage

ORIGINAL = "".join(f"value_{i} = {i}\n" for i in range(12))
CURRENT = ORIGINAL.replace("value_1 = 1\n", "value_1 = 1\nhistory = 1\n")
NEXT = CURRENT.replace("value_9 = 9\n", "value_9 = 9\nnext_edit = 9\n")
OTHER = CURRENT.replace("value_9 = 9\n", "value_9 = 9\nother = 9\n")  # same place, other text


def generation(rid: str, output: str, *, language: str = "Python", extraction: str = "ok") -> dict:
    extracted = extraction == "ok"
    return {
        "id": rid,
        "prompt": build_prompt(ORIGINAL, CURRENT, path="a.py"),
        "output": output if extracted else "",
        "ground_truth": NEXT,
        "language": language,
        "output_tokens": 20,
        "raw_output": output,
        "extracted": extracted,
        "extraction": extraction,
    }


def write_predictor(root: Path, name: str, generations: list[dict], judgments: list[dict] | None) -> None:
    write_jsonl(root / "data/generate" / f"{name}.jsonl", generations)
    if judgments is not None:
        write_jsonl(root / "data/judge" / f"{name}.jsonl", judgments)


def judged(**verdicts: int | None) -> list[dict]:
    return [{"id": i, "judgment": v, "reason": ""} for i, v in verdicts.items()]


def run(predictors: list[str], reference: str = "", samples: int = 300):
    inputs = {name: (paths.generations(name), paths.judgments(name)) for name in predictors}
    return evaluate(inputs, reference=reference, context_lines=3, bootstrap_samples=samples, seed=0)


@pytest.fixture
def two_predictors(tmp_path: Path, monkeypatch) -> Path:
    monkeypatch.chdir(tmp_path)
    finetuned = [
        generation("a", NEXT),
        generation("b", NEXT, language="Go"),
        generation("c", OTHER, language="Go"),
        generation("d", "", extraction="no_marker"),
        generation("e", "", extraction="missing"),  # the file predictor had no row for it
    ]
    write_predictor(tmp_path, "finetuned", finetuned, judged(a=1, b=1, c=0, d=None, e=0))
    identity = [generation(i, CURRENT, language="Go" if i in "bc" else "Python") for i in "abcde"]
    write_predictor(tmp_path, "identity", identity, judged(**dict.fromkeys("abcde", 0)))
    return tmp_path


def test_headline_holds_the_paper_metrics_intervals_and_paired_tests(two_predictors: Path):
    ev = run(["finetuned", "identity"])
    per_metric = {f"{m}{s}" for m in HEADLINE for s in ("", "_lo", "_hi")}
    assert set(ev.headline) == {f"finetuned.{k}" for k in {"n", *per_metric}} | {
        f"identity.{k}" for k in {"n", *per_metric, *(f"{m}_p" for m in HEADLINE)}
    }
    h = ev.headline
    assert h["finetuned.n"] == 5
    assert h["finetuned.exact_match"] == 0.4
    assert h["finetuned.partial_match"] == 0.4
    assert h["finetuned.position_match"] == 0.6  # c: same place, other text
    assert h["finetuned.llm_judge"] == 0.4  # 2 yes of 5: the null judgment counts as no (as the paper)
    assert h["identity.exact_match"] == 0.0 and h["identity.delta_chrf"] == 0.0
    for m in HEADLINE:
        assert h[f"finetuned.{m}_lo"] <= h[f"finetuned.{m}"] <= h[f"finetuned.{m}_hi"]
    assert h["finetuned.exact_match_lo"] < h["finetuned.exact_match_hi"]
    # identity vs finetuned: 2 discordant pairs (a, b), all one way: exact McNemar p = 2 / 2^2 = 0.5
    assert h["identity.exact_match_p"] == 0.5
    assert h["identity.position_match_p"] == 0.25
    assert 0 < h["identity.delta_chrf_p"] <= 1


def test_details_hold_everything_else(two_predictors: Path):
    d = run(["finetuned", "identity"]).details
    assert not {k for k in d if k.split(".", 1)[1] in ("n", *HEADLINE)}  # no headline key twice
    assert d["finetuned.missing"] == 1 and d["identity.missing"] == 0
    assert d["finetuned.unextractable_rate"] == 0.4  # d (no marker) and e (missing)
    assert d["finetuned.judged"] == 4 and d["finetuned.judge_null"] == 1
    assert d["finetuned.llm_judge_judged"] == 0.5
    assert d["finetuned.exact_match_eol"] == 0.4 and d["finetuned.position_match_chunk"] == 0.6
    assert d["finetuned.agreement.exact_match"] == 1.0
    assert d["finetuned.edit_similarity_lo"] <= d["finetuned.edit_similarity"] <= d["finetuned.edit_similarity_hi"]
    assert d["finetuned.mean_output_tokens"] == 20.0
    assert d["identity.paired_n"] == 5
    assert not any("latency" in k for k in d)
    assert all(isinstance(v, int | float) for v in d.values())


def test_tables_have_every_main_metric_with_intervals(two_predictors: Path):
    ev = run(["finetuned", "identity"])
    rows = ev.predictor_rows
    assert [r["predictor"] for r in rows] == ["finetuned", "identity"]
    for m in MAIN_METRICS:
        assert m in rows[0]
    for m in MAIN_METRICS:
        assert rows[0][f"{m}_lo"] <= rows[0][m] + 1e-12 and rows[0][m] <= rows[0][f"{m}_hi"] + 1e-12, m
    # chunks: 2 of 3 predicted are true (a, b; not c), 2 of 5 true are found: F1 = 2PR / (P + R) = 0.5
    assert rows[0]["edit_f1"] == pytest.approx(0.5) and rows[0]["edit_f1_lo"] < 0.5 < rows[0]["edit_f1_hi"]
    by_key = {(r["predictor"], r["language"]): r for r in ev.language_rows}
    assert set(by_key) == {(p, lang) for p in ("finetuned", "identity") for lang in ("Go", "Python")}
    assert by_key["finetuned", "Go"]["n"] == 2 and by_key["finetuned", "Go"]["exact_match"] == 0.5
    assert by_key["finetuned", "Python"]["n"] == 3 and "delta_chrf_hi" in by_key["finetuned", "Python"]


def test_imported_generations_get_the_papers_numbers_not_the_chunk_ones(tmp_path: Path, monkeypatch):
    """Rows as the file predictor writes them for NEP records (ground truth = new contents plus
    the template's newline), built so that the paper's hunk metrics and nep's chunk variants
    disagree, and so that final newlines differ."""
    monkeypatch.chdir(tmp_path)
    base = "".join(f"line {i}\n" for i in range(30))

    def add(text: str, n: int, new: str) -> str:
        return text.replace(f"line {n}\n", f"line {n}\n{new}\n", 1)

    def row(rid: str, truth: str, output: str) -> dict:
        return {**generation(rid, output), "prompt": build_prompt(base, base), "ground_truth": truth}

    two_near = add(add(base, 10, "a"), 13, "b")  # one hunk, two chunks
    far = add(base, 20, "x")
    rows = [
        row("merged", two_near, add(base, 10, "a")),  # paper: no partial, no position; chunks: both
        row("shifted", far, add(far, 2, "extra")),  # paper: position only (header moved); chunks: both
        row("eol", far, far.rstrip("\n")),  # paper: not exact, partial and position; eol: exact
        row("exact", far, far),
    ]
    write_predictor(tmp_path, "imported", rows, judged(merged=0, shifted=0, eol=1, exact=1))
    ev = run(["imported"])
    h, d = ev.headline, ev.details
    assert (h["imported.exact_match"], h["imported.partial_match"], h["imported.position_match"]) == (
        0.25, 0.5, 0.75
    )
    assert (d["imported.exact_match_eol"], d["imported.partial_match_chunk"], d["imported.position_match_chunk"]) == (
        0.5, 1.0, 1.0
    )


def test_reference_is_chosen_in_params(two_predictors: Path):
    h = run(["finetuned", "identity"], reference="identity").headline
    assert "finetuned.exact_match_p" in h and "identity.exact_match_p" not in h
    with pytest.raises(NepError, match="evaluate.reference: 'nope'"):
        run(["finetuned", "identity"], reference="nope")


def test_missing_prediction_scores_zero_even_if_judged_yes(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_predictor(tmp_path, "p", [generation("a", "", extraction="missing")], judged(a=1))
    ev = run(["p"])
    assert ev.headline["p.exact_match"] == 0.0 and ev.headline["p.partial_match"] == 0.0
    assert ev.details["p.missing"] == 1


def test_main_writes_four_files_identically_on_rerun(two_predictors: Path, capsys):
    params = {
        "generate": {"predictors": {
            "finetuned": {"kind": "identity", "needs": "x"}, "identity": {"kind": "identity", "needs": "x"},
        }},
        "evaluate": {"context_lines": 2, "reference": "", "bootstrap_samples": 200, "seed": 3},
    }
    Path("params.yaml").write_text(yaml.safe_dump(params))
    evaluate_stage.main()
    files = ["metrics/evaluate.json", *(f"metrics/evaluate/{n}.json" for n in ("details", "predictors", "languages"))]
    first = {f: Path(f).read_bytes() for f in files}
    headline = json.loads(first["metrics/evaluate.json"])
    assert "identity.exact_match_p" in headline and "finetuned.exact_match_p" not in headline
    assert json.loads(first["metrics/evaluate/predictors.json"])["rows"][0]["predictor"] == "finetuned"
    assert "finetuned: n=5" in capsys.readouterr().out
    evaluate_stage.main()
    assert {f: Path(f).read_bytes() for f in files} == first


def test_id_mismatches_are_counted(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_predictor(tmp_path, "p", [generation("a", NEXT), generation("b", NEXT)], judged(a=1, zzz=0))
    d = run(["p"]).details
    assert d["p.judge_missing"] == 1 and d["p.judge_unmatched"] == 1 and d["p.judged"] == 1


def test_judgments_of_other_generations_are_an_error(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_predictor(tmp_path, "p", [generation("a", NEXT)], judged(old=1))
    with pytest.raises(NepError, match=r"p\.jsonl: no judgment id matches"):
        run(["p"])


def test_missing_judge_file_names_it(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_predictor(tmp_path, "p", [generation("a", NEXT)], None)
    with pytest.raises(NepError, match=r"judge/p\.jsonl: judgment file not found"):
        run(["p"])


def test_empty_generations_are_an_error(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_predictor(tmp_path, "p", [], [])
    with pytest.raises(NepError, match=r"generate/p\.jsonl: no usable generation records"):
        run(["p"])
    with pytest.raises(NepError, match="no predictors"):
        run([])


def test_bad_records_are_dropped_and_counted(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    broken = generation("b", NEXT)
    broken["prompt"] = "no markers here"
    write_predictor(
        tmp_path, "p", [generation("a", NEXT), {"id": "x", "output": "?"}, broken],
        [{"id": "a", "judgment": "yes", "reason": ""}],
    )
    with (tmp_path / "data/generate/p.jsonl").open("a") as f:
        f.write("{not json\n")
    ev = run(["p"])
    assert ev.headline["p.n"] == 1
    d = ev.details
    assert d["p.dropped.missing_field"] == 1 and d["p.dropped.bad_prompt"] == 1
    assert d["p.dropped.malformed_json"] == 1
    assert d["p.dropped.bad_judgment"] == 1 and d["p.judge_null"] == 1


def test_duplicate_generation_id_is_an_error(tmp_path: Path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_predictor(tmp_path, "p", [generation("a", NEXT), generation("a", NEXT)], [])
    with pytest.raises(NepError, match="duplicate generation id a"):
        run(["p"])


@pytest.mark.slow
def test_dvc_plots_show_draws_every_declared_plot(two_predictors: Path):
    """dvc.yaml's top-level plots render from the tables evaluate writes (in a scratch DVC repo)."""
    root = two_predictors
    git(root, "init", "-q")
    shutil.copy(REPO_ROOT / "dvc.yaml", root / "dvc.yaml")
    shutil.copy(REPO_ROOT / "params.yaml", root / "params.yaml")
    (root / ".dvc").mkdir()
    shutil.copytree(REPO_ROOT / ".dvc/plots", root / ".dvc/plots")
    names = ["finetuned", "identity"]
    evaluate_stage.write(run(names), {name: paths.generations(name) for name in names}, "next_version")
    data = json.loads(run_dvc(root, "plots", "show", "--json"))["data"]
    declared = [next(iter(p)) for p in yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["plots"]]
    evaluate_plots = [p for p in declared if "predictor" in p or "language" in p]
    assert evaluate_plots and set(evaluate_plots) <= set(data)
    for name in evaluate_plots:
        (plot,) = data[name]
        assert len(plot["content"]["data"]["values"]) == (2 if "predictor" in name else 4), name
