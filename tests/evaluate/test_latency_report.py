"""The accuracy-against-latency view beside metrics/timing/: rows joined from the timing files and
evaluate's tables, the table, the chart, the page, and nothing written before any timing exists."""

from __future__ import annotations

import json
from pathlib import Path

from nep.evaluate.latency_report import collect, summary_line, write

TIMING = {"device": "cpu", "machine": "Some CPU, 2 threads", "batch_size": 8, "answers_timed": 5,
          "latency_p50_s": 14.5, "latency_p95_s": 19.25, "ttft_p50_s": 3.5, "ttft_p95_s": 4.0,
          "s_per_answer": 2.9, "tokens_per_s": 171.6, "wall_s": 31.0}


def tables(root: Path) -> dict[str, Path]:
    (root / "timing").mkdir(parents=True)
    (root / "timing" / "model.json").write_text(json.dumps(TIMING))
    (root / "timing" / "model.answers.jsonl").write_text("{}\n")  # per-answer lines: not a summary
    (root / "timing" / "base.json").write_text(json.dumps({**TIMING, "latency_p50_s": 2e-5, "latency_p95_s": 9e-5,
                                                           "ttft_p50_s": None, "batch_size": 1}))
    (root / "timing" / "broken.json").write_text("{not json")
    rows = [{"predictor": "model", "exact_match": 0.25, "exact_match_lo": 0.125, "exact_match_hi": 0.5,
             "llm_judge": 0.5, "delta_chrf": 0.3},
            {"predictor": "base", "exact_match": 0.0, "llm_judge": 0.0, "delta_chrf": 0.1},
            {"predictor": "untimed", "exact_match": 0.0}]
    (root / "predictors.json").write_text(json.dumps({"rows": rows}))
    coverage = [{"predictor": "model", "coverage": 1.0, "exact_match": 0.25},
                {"predictor": "model", "coverage": 0.5, "exact_match": 0.75}]
    (root / "coverage.json").write_text(json.dumps({"rows": coverage}))
    return {"timing_dir": root / "timing", "predictors_path": root / "predictors.json",
            "coverage_path": root / "coverage.json"}


def test_rows_join_timing_accuracy_and_the_surer_half(tmp_path: Path):
    rows = {r["predictor"]: r for r in collect(**tables(tmp_path))}
    assert list(rows) == ["model", "base", "untimed"]  # evaluate's order; a broken timing file is skipped
    assert rows["model"]["latency_p95_s"] == 19.25 and rows["model"]["exact_match_at50"] == 0.75
    assert rows["base"]["exact_match_at50"] is None and rows["untimed"]["machine"] is None
    assert summary_line(rows["model"]) == ("model: p50 14.50 s, p95 19.25 s per answer, first token 3.50 s "
                                           "(batch 8, cpu: Some CPU, 2 threads)")
    assert summary_line(rows["base"]).startswith("base: p50 20 µs, p95 90 µs per answer (batch 1")


def test_the_view_is_a_table_a_chart_and_a_page(tmp_path: Path):
    out = tmp_path / "view"
    write(out, judge="rules judge", **tables(tmp_path))
    readme = (out / "README.md").read_text()
    assert "| model | cpu | Some CPU, 2 threads | 8 | 5 | 14.50 s | 19.25 s | 3.50 s | 2.90 s | 171.6 | " \
           "0.250 [0.125, 0.500] | 0.500 | 0.300 | 0.750 |" in readme
    assert "rules judge" in readme and "![Accuracy against latency](accuracy_latency.svg)" in readme
    page = (out / "index.html").read_text()
    assert page.count("<tr>") == 4 and "<svg" in page and "Some CPU, 2 threads" in page
    assert (out / "accuracy_latency.svg").read_text().startswith("<svg")
    assert (out / "latency.csv").read_text().splitlines()[1].startswith('"model","cpu","Some CPU, 2 threads",8,')


def test_nothing_is_written_before_any_timing(tmp_path: Path):
    paths = tables(tmp_path)
    for f in paths["timing_dir"].iterdir():
        f.unlink()
    write(tmp_path / "view", **paths)
    assert not (tmp_path / "view").exists()
