"""How sure: each headline metric on the answers a predictor is surest of, and abstaining.

A generation record's `logprob` is its answer's confidence: the mean log-probability of the tokens
the model generated (hf/finetuned, vllm; openai with `logprobs: true`; a file's rows when they
carry it), rounded to 4 decimals by the generate stage. Ranking a predictor's examples by it
(surest first; ties by id; examples without one last) gives

- **coverage**: each headline metric over the surest `COVERAGES` of the examples (100%: all of
  them; 50%: the surer half, ceil(0.5 n)), `<p>.coverage_<pct>.<metric>` in details.json and the
  rows of metrics/evaluate/coverage.json (the report's "Coverage" table);
- **risk–coverage**: 1 − exact match over the surest k examples for k = 1 … n (at most
  `CURVE_POINTS` points), the rows of metrics/evaluate/risk_coverage.json (the report's chart).

`evaluate.min_confidence: {<predictor>: <log-prob>}` makes a predictor abstain: an answer less
sure than that becomes "no suggestion", scored as the current version unchanged (what an editor
shows when nothing is suggested), never dropped, and counted (`<p>.no_suggestion`). Predictors
without confidences get the 100% row only.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from nep.core.prompts import template_completion
from nep.util.jsonl import read_jsonl

COVERAGES = (1.0, 0.8, 0.5, 0.2)
CURVE_POINTS = 100
NO_SUGGESTION = "no_suggestion"
RISK_METRIC = "exact_match"  # risk = 1 − this metric over the covered examples


def confidence(record: dict[str, Any]) -> float | None:
    value = record.get("logprob")
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def confidences(generations_path: Path) -> dict[str, float | None]:
    """id → the answer's confidence (None where the record has none); lines the scoring dropped
    (and counted) are skipped here too."""
    rows = read_jsonl(generations_path, Counter())
    return {r["id"]: confidence(r) for r in rows if isinstance(r.get("id"), str)}


def abstain(record: dict[str, Any], threshold: float | None, current: str) -> tuple[dict[str, Any], bool]:
    """The record as scored under `threshold`: an answer with a confidence below it becomes no
    suggestion (the current version, as a direct answer and as a template-trained model writes it),
    (record, True); else the record unchanged, False. An answer without a confidence is kept."""
    value = confidence(record)
    if threshold is None or value is None or value >= threshold:
        return record, False
    return {**record, "output": current, "raw_output": template_completion(current), "extracted": True,
            "extraction": NO_SUGGESTION}, True


def ranked(ids: Sequence[str], sure: dict[str, float | None]) -> list[int]:
    """Positions of `ids`, surest first (ties by id), those without a confidence last."""
    return sorted(range(len(ids)), key=lambda i: (sure.get(ids[i]) is None, -(sure.get(ids[i]) or 0.0), ids[i]))


def covered(n: int, coverage: float) -> int:
    return max(1, math.ceil(coverage * n - 1e-9)) if n else 0


def coverage_tables(name: str, scores: Sequence[Any], sure: dict[str, float | None], summarize,
                    metrics: Sequence[str], *, abstained: int | None = None
                    ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(coverage rows, risk–coverage rows) of one predictor: `summarize(scores)` (evaluation's)
    over the surest share at each of COVERAGES, and the curve of 1 − RISK_METRIC. `abstained`: the
    answers `evaluate.min_confidence` made no suggestion (the 100% row's `no_suggestion`)."""
    ids = [s.id for s in scores]
    order = ranked(ids, sure)
    with_confidence = sum(sure.get(i) is not None for i in ids)
    shares = COVERAGES if with_confidence else COVERAGES[:1]
    rows = []
    for share in shares:
        part = [scores[i] for i in order[: covered(len(scores), share)]]
        summary = summarize(part)
        rows.append({"predictor": name, "coverage": share, "n": len(part),
                     "min_logprob": min((sure[s.id] for s in part if sure.get(s.id) is not None), default=None),
                     **{m: summary[m] for m in metrics},
                     **({NO_SUGGESTION: abstained} if abstained is not None and share == 1.0 else {})})
    curve = []
    if with_confidence:
        correct = [float(bool(getattr(scores[i], RISK_METRIC))) for i in order]
        ks = sorted({covered(len(scores), (p + 1) / CURVE_POINTS) for p in range(CURVE_POINTS)})
        for k in ks:
            curve.append({"predictor": name, "coverage": round(k / len(scores), 6),
                          "risk": round(1 - sum(correct[:k]) / k, 6)})
    return rows, curve


def details(rows: Sequence[dict[str, Any]], metrics: Sequence[str]) -> dict[str, float | int | None]:
    """`coverage_<pct>.<metric>` (and `.n`) of one predictor's coverage rows, for details.json."""
    out: dict[str, float | int | None] = {}
    for row in rows:
        key = f"coverage_{round(row['coverage'] * 100)}"
        out[f"{key}.n"] = row["n"]
        out.update({f"{key}.{m}": row[m] for m in metrics})
    return out
