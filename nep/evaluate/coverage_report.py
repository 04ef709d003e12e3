"""The report's "Coverage" section: each headline metric on the surest 100/80/50/20% of a
predictor's answers (metrics/evaluate/coverage.json) and the risk–coverage chart
(metrics/evaluate/risk_coverage.json), as Markdown lines and one SVG. Same inputs, same bytes."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from nep.evaluate.charts import render_svg
from nep.evaluate.coverage import RISK_METRIC
from nep.evaluate.headline import BY_NAME, HEADLINE_METRICS
from nep.util import paths
from nep.util.errors import NepError

COVERAGE_TABLE = paths.metrics("evaluate", "coverage")
RISK_TABLE = paths.metrics("evaluate", "risk_coverage")
RISK_CHART = "risk_coverage.svg"


def read_table(path: Path) -> list[dict[str, Any]] | None:
    """The rows of an evaluate table, None when it was not written (an older evaluate)."""
    if not path.exists():
        return None
    try:
        rows = json.loads(path.read_text(encoding="utf-8"))["rows"]
    except (ValueError, KeyError, TypeError) as e:
        raise NepError(f'{path}: expected a JSON object {{"rows": [...]}} ({e})') from None
    if not isinstance(rows, list) or not all(isinstance(r, dict) and isinstance(r.get("predictor"), str) for r in rows):
        raise NepError(f"{path}: `rows` must be objects naming their `predictor`")
    return rows


def _cell(value: Any) -> str:
    return "–" if value is None else f"{value:.3f}"


def coverage_markdown(rows: list[dict[str, Any]], judge: str = "judge") -> str:
    """Predictor × coverage, each headline metric on the surest share of the answers."""
    labels = [judge if m.name == "llm_judge" else m.column for m in HEADLINE_METRICS]
    abstaining = any("no_suggestion" in r for r in rows)  # evaluate.min_confidence is set
    if abstaining:
        labels.append("no suggestion")
    lines = ["| predictor | coverage | n | least sure log-prob kept | " + " | ".join(labels) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(labels)]
    for r in rows:
        cells = [_cell(r.get(m.name)) for m in HEADLINE_METRICS]
        if abstaining:
            cells.append(str(r["no_suggestion"]) if "no_suggestion" in r else "–")
        least = "–" if r.get("min_logprob") is None else f"{r['min_logprob']:.4f}"
        lines.append(f"| {r['predictor']} | {round(r['coverage'] * 100)}% | {r['n']} | {least} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def risk_coverage_spec(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Vega-Lite: risk (1 − exact match over the covered answers) against coverage, a line per predictor."""
    label = BY_NAME[RISK_METRIC].label
    return {
        "$schema": "https://vega.github.io/schema/vega-lite/v5.json",
        "title": f"Risk–coverage: 1 − {label} on the surest answers",
        "width": 420, "height": 260,
        "data": {"values": rows},
        "mark": {"type": "line", "point": True, "interpolate": "step-after"},
        "encoding": {
            "x": {"field": "coverage", "type": "quantitative", "scale": {"domain": [0, 1]},
                  "title": "coverage (share of answers kept, surest first)", "axis": {"format": "%"}},
            "y": {"field": "risk", "type": "quantitative", "scale": {"domain": [0, 1]},
                  "title": f"risk (1 − {label})"},
            "color": {"field": "predictor", "type": "nominal", "title": "predictor"},
            # a dash pattern each too: a curve under an identical one shows through the gaps
            "strokeDash": {"field": "predictor", "type": "nominal", "title": "predictor"},
        },
    }


def coverage_section(out_dir: Path, judge: str = "judge", *, coverage_path: Path = COVERAGE_TABLE,
                     risk_path: Path = RISK_TABLE) -> list[str]:
    """The section's Markdown lines (none when evaluate wrote no coverage table); draws
    `RISK_CHART` into `out_dir` when some predictor has confidences."""
    rows = read_table(coverage_path)
    if rows is None:
        return []
    curve = read_table(risk_path) or []
    lines = ["## Coverage", "",
             "Each metric on the answers a predictor is surest of (mean token log-probability, highest first): "
             "100% is every answer, 50% the surer half. Predictors whose engine gives no log-probabilities "
             "have the 100% row only. `evaluate.min_confidence` turns less sure answers into no suggestion "
             "(docs/metrics.md).", "", coverage_markdown(rows, judge), ""]
    if curve:
        (out_dir / RISK_CHART).write_text(render_svg(risk_coverage_spec(curve)))
        lines += [f"![Risk–coverage]({RISK_CHART})", ""]
    return lines
