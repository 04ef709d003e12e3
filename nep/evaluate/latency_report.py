"""How fast against how good: each predictor's measured latency beside its accuracy, in
metrics/timing/report/ (README.md, index.html, latency.csv, accuracy_latency.svg).

Measured times change on every run, so this view lives with them under metrics/timing/ (git-ignored,
never a DVC output, never compared) and not in metrics/report/, whose bytes must not change on a
rerun. The generate stage refreshes it after each predictor (its new times beside the last
evaluation) and the report stage after each evaluation. Inputs: metrics/timing/generate/<p>.json
(nep.predictors.latency.summary: p50/p95 per answer, time to first token, tokens per second,
batch size, device, machine), metrics/evaluate/predictors.json and coverage.json.
"""

from __future__ import annotations

import html
import json
import logging
import sys
from pathlib import Path
from typing import Any

from nep.evaluate.headline import BY_NAME
from nep.util import paths

log = logging.getLogger(__name__)

OUT_DIR = paths.TIMING / "report"
TIMING_DIR = paths.TIMING / "generate"
PREDICTORS_TABLE = paths.metrics("evaluate", "predictors")
COVERAGE_TABLE = paths.metrics("evaluate", "coverage")
CHART = "accuracy_latency.svg"
ACCURACY = ("exact_match", "llm_judge", "delta_chrf")  # the chart's panels and the table's columns
HALF = 0.5  # the coverage shown beside the full-coverage numbers


def _read(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        log.warning("%s: skipped (%s)", path, e)
        return None


def _rows(path: Path) -> list[dict[str, Any]]:
    data = _read(path) if path.exists() else None
    rows = data.get("rows") if isinstance(data, dict) else None
    return [r for r in rows if isinstance(r, dict) and isinstance(r.get("predictor"), str)] if isinstance(rows, list) else []


def collect(timing_dir: Path = TIMING_DIR, predictors_path: Path = PREDICTORS_TABLE,
            coverage_path: Path = COVERAGE_TABLE) -> list[dict[str, Any]]:
    """One row per predictor that has a timing or an evaluation: its timing row, its accuracy
    (with 95% intervals) and its accuracy on the surer half of its answers (None where absent).
    Evaluated predictors first, in evaluate's order."""
    accuracy = {r["predictor"]: r for r in _rows(predictors_path)}
    half = {r["predictor"]: r for r in _rows(coverage_path) if r.get("coverage") == HALF}
    timing = {}
    for path in sorted(timing_dir.glob("*.json")) if timing_dir.is_dir() else []:
        data = _read(path)
        if isinstance(data, dict):
            timing[path.stem] = data
    names = [*accuracy, *(n for n in timing if n not in accuracy)]
    out = []
    for name in names:
        t, a, h = timing.get(name, {}), accuracy.get(name, {}), half.get(name, {})
        row = {"predictor": name,
               **{k: t.get(k) for k in ("device", "machine", "batch_size", "answers_timed", "latency_p50_s",
                                        "latency_p95_s", "ttft_p50_s", "ttft_p95_s", "s_per_answer", "tokens_per_s")}}
        for m in ACCURACY:
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = a.get(m), a.get(f"{m}_lo"), a.get(f"{m}_hi")
            row[f"{m}_at50"] = h.get(m)
        out.append(row)
    return out


def _seconds(value: Any) -> str:
    if not isinstance(value, (int, float)):
        return "–"
    if value >= 1:
        return f"{value:.2f} s"
    return f"{value * 1000:.3g} ms" if value >= 1e-3 else f"{value * 1e6:.3g} µs"


def _number(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "–"


def _with_ci(row: dict[str, Any], m: str) -> str:
    if row.get(m) is None:
        return "–"
    lo, hi = row.get(f"{m}_lo"), row.get(f"{m}_hi")
    return f"{row[m]:.3f} [{lo:.3f}, {hi:.3f}]" if lo is not None and hi is not None else f"{row[m]:.3f}"


def table(rows: list[dict[str, Any]], judge: str = "judge") -> tuple[list[str], list[list[str]]]:
    """(header, cells) of the latency × accuracy table."""
    label = {m: judge if m == "llm_judge" else BY_NAME[m].label for m in ACCURACY}
    header = ["predictor", "device", "machine", "batch", "answers timed", "p50 s/answer", "p95 s/answer",
              "first token p50", "machine s/answer", "tokens/s", *(label[m] for m in ACCURACY),
              f"{label['exact_match']} (surest 50%)"]
    cells = []
    for r in rows:
        cells.append([r["predictor"], r["device"] or "–", r["machine"] or "–",
                      "–" if r["batch_size"] is None else str(r["batch_size"]),
                      "–" if r["answers_timed"] is None else str(r["answers_timed"]),
                      _seconds(r["latency_p50_s"]), _seconds(r["latency_p95_s"]), _seconds(r["ttft_p50_s"]),
                      _seconds(r["s_per_answer"]), _number(r["tokens_per_s"], 1),
                      *(_with_ci(r, m) for m in ACCURACY), _number(r["exact_match_at50"])])
    return header, cells


def chart_spec(rows: list[dict[str, Any]], judge: str = "judge") -> dict[str, Any]:
    """Vega-Lite: one panel per accuracy metric, latency p50 (log scale) on x with a line to p95,
    accuracy on y, a labelled point per predictor."""
    points = [r for r in rows if isinstance(r.get("latency_p50_s"), (int, float)) and r["latency_p50_s"] > 0]
    panels = []
    for m in ACCURACY:
        label = judge if m == "llm_judge" else BY_NAME[m].label
        x = {"field": "latency_p50_s", "type": "quantitative", "scale": {"type": "log"},
             "axis": {"grid": False, "tickCount": 6, "format": "~g"},
             "title": "seconds per answer (p50, line to p95; log scale)"}
        y = {"field": m, "type": "quantitative", "scale": {"domain": [0, 1]}, "title": label}
        panels.append({
            "width": 260, "height": 220, "title": label,
            "layer": [
                {"mark": {"type": "rule"}, "encoding": {"x": x, "x2": {"field": "latency_p95_s"}, "y": y,
                                                        "color": {"field": "predictor", "type": "nominal"}}},
                {"mark": {"type": "point", "filled": True, "size": 70},
                 "encoding": {"x": x, "y": y, "color": {"field": "predictor", "type": "nominal"}}},
                {"mark": {"type": "text", "dy": -10, "fontSize": 10},
                 "encoding": {"x": x, "y": y, "text": {"field": "predictor"}}},
            ],
        })
    return {"$schema": "https://vega.github.io/schema/vega-lite/v5.json",
            "title": "Accuracy against latency (measured on the machine each row names)",
            "data": {"values": [{k: v for k, v in r.items() if v is not None} for r in points]},
            "hconcat": panels}


def _markdown(header: list[str], cells: list[list[str]]) -> str:
    esc = [[c.replace("|", "\\|") for c in row] for row in cells]
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header),
                      *("| " + " | ".join(row) + " |" for row in esc)])


NOTE = ("Seconds per answer: from the request to the answer in hand. An engine that answers a batch in one call "
        "(hf/finetuned: `generate.batch_size` prompts; vllm: a chunk) hands every answer of the batch back at its "
        "end, so each waits the whole call: compare predictors at the same batch size. Machine s/answer: the "
        "machine's time per answer (a call's time shared by its answers), model loading left out. First token: "
        "the end of the prefill, where the engine shows it. Accuracy: metrics/evaluate/ (95% intervals); "
        "surest 50%: on the half of the answers the predictor is surest of (metrics/evaluate/coverage.json).")


def write(out_dir: Path = OUT_DIR, *, timing_dir: Path = TIMING_DIR, predictors_path: Path = PREDICTORS_TABLE,
          coverage_path: Path = COVERAGE_TABLE, judge: str = "judge") -> list[dict[str, Any]]:
    """Write the view (nothing when no predictor has a timing yet); return its rows."""
    rows = collect(timing_dir, predictors_path, coverage_path)
    if not any(r["machine"] for r in rows):
        return rows
    from nep.evaluate.charts import render_svg

    out_dir.mkdir(parents=True, exist_ok=True)
    header, cells = table(rows, judge)
    svg = render_svg(chart_spec(rows, judge))
    (out_dir / CHART).write_text(svg, encoding="utf-8")
    with (out_dir / "latency.csv").open("w", encoding="utf-8") as f:
        keys = list(rows[0])
        f.write(",".join(keys) + "\n")
        for r in rows:
            f.write(",".join("" if r[k] is None else json.dumps(r[k]) if isinstance(r[k], str) else str(r[k])
                             for k in keys) + "\n")
    (out_dir / "README.md").write_text(
        "# nep: accuracy against latency\n\nMeasured by the last generate run of each predictor (metrics/timing/, "
        "not a DVC output: it changes on every run).\n\n" + _markdown(header, cells) + "\n\n" + NOTE
        + f"\n\n![Accuracy against latency]({CHART})\n", encoding="utf-8")
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in cells)
    (out_dir / "index.html").write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>nep: accuracy against latency</title><style>"
        "body{font-family:sans-serif;margin:24px}table{border-collapse:collapse;font-size:13px}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}"
        "p{max-width:70em;font-size:13px;color:#444}</style></head><body><h1>Accuracy against latency</h1>"
        f"<table><tr>{head}</tr>{body}</table><p>{html.escape(NOTE)}</p>{svg}</body></html>\n", encoding="utf-8")
    return rows


def summary_line(row: dict[str, Any]) -> str:
    """One predictor's latency in words, for a stage's log."""
    if not row.get("machine"):
        return f"{row['predictor']}: no timing yet"
    first = f", first token {_seconds(row['ttft_p50_s'])}" if row.get("ttft_p50_s") is not None else ""
    return (f"{row['predictor']}: p50 {_seconds(row['latency_p50_s'])}, p95 {_seconds(row['latency_p95_s'])} "
            f"per answer{first} (batch {row['batch_size']}, {row['device']}: {row['machine']})")


def refresh(judge: str = "judge") -> list[dict[str, Any]]:
    """`write` for a stage: a problem with this measured view is a warning, never a failed stage."""
    from nep.util.errors import NepError

    try:
        return write(judge=judge)
    except (NepError, OSError, ValueError, KeyError, TypeError) as e:
        log.warning("%s: not written (%s: %s)", OUT_DIR, type(e).__name__, e)
        return []


def main() -> None:
    """`python -m nep.evaluate.latency_report [PREDICTOR...]`: refresh the view (the generate stage runs this after
    each predictor, as a separate process: its DVC outputs never depend on this module)."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    judge = "judge"
    try:
        from nep.config.params import load_params
        from nep.evaluate.report import judge_label

        cfg = load_params("judge")
        judge = judge_label(cfg["backend"], cfg["model"] if cfg["backend"] == "openai" else None)
    except Exception:  # noqa: BLE001 - no params.yaml here: the plain label
        pass
    only = sys.argv[1:]  # predictor names: the lines to print (default: every timed predictor)
    rows = [r for r in refresh(judge) if r["machine"] and (not only or r["predictor"] in only)]
    if rows:
        print("; ".join(summary_line(r) for r in rows) + f" (all predictors: {OUT_DIR}/index.html)")


if __name__ == "__main__":
    main()
