"""Evaluation of every predictor: read generations and judgments, join them by id, score each
example (nep/evaluate/metrics.py), summarize per predictor and per language, with bootstrap intervals and
paired tests against a reference predictor (nep/evaluate/stats.py).

Rates are means over examples (undefined ones left out, 0.0 when none is defined). `llm_judge` is
the paper's: judged "yes" over all examples (a failed or missing judgment counts as no);
`llm_judge_judged` is the share of yes among the judged ones. `agreement.<m>`: the share of judged
examples (where m is defined) on which the 0/1 metric equals the judgment.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from tqdm import tqdm

from nep.core.prompts import parse_prompt
from nep.evaluate import coverage
from nep.evaluate.headline import HEADLINE, HEADLINE_METRICS
from nep.evaluate.metrics import ExampleScore, score_example
from nep.evaluate.protocol import scored_pair
from nep.evaluate.stats import (
    bootstrap_ci,
    bootstrap_totals,
    mcnemar_p,
    means,
    nan_mean,
    paired_permutation_p,
    ratio,
)
from nep.util.console import bars
from nep.util.errors import NepError
from nep.util.jsonl import flat_counts, read_jsonl

GENERATION_FIELDS = ("id", "prompt", "output", "ground_truth")

# Per-example metrics (a rate or mean over examples; None = undefined for the example): the
# headline ones as nep/evaluate/headline.py declares them, then the others.
PER_EXAMPLE: dict[str, Callable[[ExampleScore], float | bool | None]] = {
    **{m.name: m.of for m in HEADLINE_METRICS},
    "delta_chrf_precision": lambda s: s.delta_chrf_precision,
    "delta_chrf_recall": lambda s: s.delta_chrf_recall,
    "delta_chrf_8bf0582": lambda s: s.delta_chrf_8bf0582,
    "kept_recall": lambda s: s.kept_recall,
    "brace_imbalance": lambda s: s.brace_imbalance,
    "isolated_whitespace_rate": lambda s: s.isolated_whitespace,
    "edit_chrf": lambda s: s.edit_chrf,
    "edit_similarity": lambda s: s.edit_similarity,
    "exact_match_eol": lambda s: s.exact_match_eol,
    "exact_match_ws": lambda s: s.exact_match_ws,
    "partial_match_chunk": lambda s: s.partial_match_chunk,
    "position_match_chunk": lambda s: s.position_match_chunk,
    "location_accuracy": lambda s: s.location_match,
    "reversal_rate": lambda s: s.reversal,
}
# The columns of the predictor and language tables (each with _lo/_hi).
MAIN_METRICS = (
    *HEADLINE,
    "delta_chrf_precision",
    "delta_chrf_recall",
    "delta_chrf_8bf0582",
    "edit_similarity",
    "exact_match_eol",
    "partial_match_chunk",
    "position_match_chunk",
    "edit_f1",
    "exact_lines_f1",
    "location_accuracy",
    "reversal_rate",
)
AGREEMENT_METRICS = ("exact_match", "partial_match", "position_match")


@dataclass
class Evaluation:
    """What the evaluate stage writes: the headline and details metrics (flat) and two tables."""

    headline: dict[str, float | int] = field(default_factory=dict)
    details: dict[str, float | int] = field(default_factory=dict)
    predictor_rows: list[dict] = field(default_factory=list)
    language_rows: list[dict] = field(default_factory=list)
    coverage_rows: list[dict] = field(default_factory=list)  # nep/evaluate/coverage.py
    risk_rows: list[dict] = field(default_factory=list)
    scores: dict[str, list[ExampleScore]] = field(default_factory=dict)  # per predictor, per example


def read_judgments(path: Path, drops: Counter) -> dict[str, int | None]:
    """id → judgment (1/0/None). Judgments other than 1/0/null are counted and read as None."""
    if not path.exists():
        raise NepError(f"{path}: judgment file not found (run `dvc repro judge` first)")
    judgments: dict[str, int | None] = {}
    for rec in read_jsonl(path, drops):
        rid, value = rec.get("id"), rec.get("judgment")
        if not isinstance(rid, str):
            drops["judgment_without_id"] += 1
            continue
        if rid in judgments:
            raise NepError(f"{path}: duplicate judgment for id {rid}")
        if isinstance(value, bool):
            value = int(value)
        if value not in (0, 1, None):
            drops["bad_judgment"] += 1
            value = None
        judgments[rid] = None if value is None else int(value)
    return judgments


def score_predictor(
    name: str, generations_path: Path, judgments_path: Path, *, context_lines: int, protocol: str = "next_version",
    min_confidence: float | None = None,
) -> tuple[list[ExampleScore], dict[str, int]]:
    """Example scores of one predictor (its generations joined with its judgments by id), and
    its counts (drops, judge coverage). `protocol`: what is scored against what (nep/evaluate/protocol.py);
    `min_confidence`: answers less sure are no suggestion (nep/evaluate/coverage.py)."""
    abstained = 0
    drops: Counter = Counter()
    judgments = read_judgments(judgments_path, drops)
    scores: list[ExampleScore] = []
    seen: set[str] = set()
    records = list(read_jsonl(generations_path, drops))
    for rec in tqdm(records, desc=f"evaluate {name}", unit="ex", leave=False, disable=bars()):
        if any(not isinstance(rec.get(f), str) for f in GENERATION_FIELDS):
            drops["missing_field"] += 1
            continue
        if rec["id"] in seen:
            raise NepError(f"{generations_path}: duplicate generation id {rec['id']}")
        seen.add(rec["id"])
        try:
            sections = parse_prompt(rec["prompt"])
        except ValueError:
            drops["bad_prompt"] += 1
            continue
        rec, unsure = coverage.abstain(rec, min_confidence, sections["current"])
        abstained += unsure
        tokens = rec.get("output_tokens")
        truth, prediction, extracted = scored_pair(rec, protocol)
        scores.append(
            score_example(
                original=sections["original"],
                current=sections["current"],
                ground_truth=truth,
                prediction=prediction,
                extracted=extracted,
                missing=rec.get("extraction") == "missing",
                judgment=judgments.get(rec["id"]),
                language=str(rec.get("language") or "unknown"),
                id=rec["id"],
                context_lines=context_lines,
                output_tokens=tokens if isinstance(tokens, int) else None,
            )
        )
    if not scores:
        raise NepError(f"{generations_path}: no usable generation records ({dict(drops) or 'empty file'})")
    unmatched = len(judgments.keys() - seen)
    if judgments and unmatched == len(judgments):
        raise NepError(
            f"{judgments_path}: no judgment id matches {generations_path} (stale judgments? re-run judge)"
        )
    counts = {
        "judge_missing": len(seen - judgments.keys()),
        "judge_null": sum(judgments.get(i, 0) is None for i in seen),
        "judge_unmatched": unmatched,
        **({coverage.NO_SUGGESTION: abstained} if min_confidence is not None else {}),
        **flat_counts("dropped", drops),
    }
    return scores, counts


def values(scores: list[ExampleScore], metrics: tuple[str, ...] | list[str]) -> np.ndarray:
    """(metrics, examples) float matrix of per-example values, NaN where undefined."""
    matrix = np.full((len(metrics), len(scores)), np.nan)
    for i, name in enumerate(metrics):
        get = PER_EXAMPLE[name]
        for j, s in enumerate(scores):
            v = get(s)
            if v is not None:
                matrix[i, j] = float(v)
    return matrix


def _counts(scores: list[ExampleScore]) -> dict[str, np.ndarray]:
    """Per example, the (true positives, predicted, true) counts behind each micro-averaged
    precision/recall: nep's chunks (`edit_*`) and Zed's exact lines (`exact_lines_*`)."""
    def matrix(rows: list[tuple[int, int, int]]) -> np.ndarray:
        return np.array(rows, dtype=float).reshape(len(rows), 3)

    return {
        "edit": matrix([(s.matched_chunks, s.predicted_chunks, s.true_chunks) for s in scores]),
        "exact_lines": matrix([
            (s.line_true_positives, s.line_true_positives + s.line_false_positives,
             s.line_true_positives + s.line_false_negatives)
            for s in scores
        ]),
    }


def micro_counts(scores: list[ExampleScore]) -> dict[str, tuple[float, float, float]]:
    """(true positives, predicted, true) summed over the examples, per counted metric."""
    return {k: tuple(m.sum(axis=0)) for k, m in _counts(scores).items()}


def _share(flags: list[bool]) -> float:
    return sum(flags) / len(flags) if flags else 0.0


def summarize(scores: list[ExampleScore]) -> dict[str, float | int]:
    """Point estimates of every metric, and counts, over a list of example scores."""
    per_example = values(scores, list(PER_EXAMPLE))
    out: dict[str, float | int] = {"n": len(scores)}
    out.update({name: nan_mean(row) for name, row in zip(PER_EXAMPLE, per_example, strict=True)})
    judged = [s for s in scores if s.judgment is not None]
    for prefix, (tp, n_pred, n_true) in micro_counts(scores).items():
        precision, recall = ratio(tp, n_pred), ratio(tp, n_true)
        out[f"{prefix}_precision"], out[f"{prefix}_recall"] = float(precision), float(recall)
        out[f"{prefix}_f1"] = float(ratio(2 * precision * recall, precision + recall))
    out.update(
        {
            "no_true_hunk": sum(s.partial_match is None for s in scores),
            "no_true_chunk": sum(s.partial_match_chunk is None for s in scores),
            "unextractable_rate": _share([not s.extracted for s in scores]),
            "missing": sum(s.missing for s in scores),
            "judged": len(judged),
            "llm_judge_judged": _share([s.judgment == 1 for s in judged]),
            "mean_output_tokens": nan_mean(
                np.array([s.output_tokens for s in scores if s.output_tokens is not None], dtype=float)
            ),
        }
    )
    for name in AGREEMENT_METRICS:
        pairs = [(getattr(s, name), s.judgment) for s in judged if getattr(s, name) is not None]
        out[f"agreement.{name}"] = _share([bool(m) == bool(j) for m, j in pairs])
    return out


def intervals(scores: list[ExampleScore], *, samples: int, seed: int) -> dict[str, float]:
    """`<m>_lo` and `<m>_hi` (95% percentile bootstrap) of every per-example metric and of the edit
    and exact-line precision, recall and F1 (ratios of counts summed over the same resamples)."""
    counted = _counts(scores)
    matrix = np.vstack([values(scores, list(PER_EXAMPLE)), *(m.T for m in counted.values())])
    sums, counts = bootstrap_totals(matrix, samples, seed)  # one set of resamples for all
    out: dict[str, float] = {}
    for k, name in enumerate(PER_EXAMPLE):
        out[f"{name}_lo"], out[f"{name}_hi"] = bootstrap_ci(means(sums[k], counts[k]))
    at = len(PER_EXAMPLE)
    for prefix in counted:
        tp, n_pred, n_true = sums[at : at + 3]
        at += 3
        precision, recall = ratio(tp, n_pred), ratio(tp, n_true)
        f1 = ratio(2 * precision * recall, precision + recall)
        for name, row in (("precision", precision), ("recall", recall), ("f1", f1)):
            out[f"{prefix}_{name}_lo"], out[f"{prefix}_{name}_hi"] = bootstrap_ci(row)
    return out


def paired_tests(
    scores: list[ExampleScore], reference: list[ExampleScore], *, samples: int, seed: int
) -> dict[str, float | int]:
    """`<m>_p` for each headline metric against the reference, on the ids both have: exact
    McNemar for the 0/1 (`binary`) metrics, a paired permutation test for the others. Also `paired_n`."""
    ours = {s.id: s for s in scores}
    theirs = {s.id: s for s in reference}
    common = sorted(ours.keys() & theirs.keys())
    a = values([ours[i] for i in common], HEADLINE)
    b = values([theirs[i] for i in common], HEADLINE)
    out: dict[str, float | int] = {"paired_n": len(common)}
    for k, metric in enumerate(HEADLINE_METRICS):
        if metric.binary:
            out[f"{metric.name}_p"] = mcnemar_p(a[k], b[k])
        else:
            out[f"{metric.name}_p"] = paired_permutation_p(a[k], b[k], samples, seed)
    return out


def _row(summary: dict, cis: dict, **keys: str) -> dict:
    row: dict = {**keys, "n": summary["n"]}
    for m in MAIN_METRICS:
        row[m] = summary[m]
        row[f"{m}_lo"], row[f"{m}_hi"] = cis[f"{m}_lo"], cis[f"{m}_hi"]
    return row


def evaluate(
    inputs: dict[str, tuple[Path, Path]], *, reference: str, context_lines: int, bootstrap_samples: int,
    seed: int, protocol: str = "next_version", min_confidence: dict[str, float] | None = None,
) -> Evaluation:
    """Score each predictor of `inputs` (name -> its generations and judgments files, in
    `generate.predictors` order) and compare it with `reference` ("" = the first predictor), under
    `protocol`. Returns the headline and details metrics and the two tables."""
    predictors = list(inputs)
    if not predictors:
        raise NepError("no predictors to evaluate (params.yaml generate.predictors is empty)")
    reference = reference or predictors[0]
    if reference not in predictors:
        raise NepError(
            f"params.yaml evaluate.reference: {reference!r} is not one of generate.predictors {predictors}"
        )
    min_confidence = min_confidence or {}
    if unknown := sorted(set(min_confidence) - set(predictors)):
        raise NepError(f"params.yaml evaluate.min_confidence: {unknown[0]!r} is not one of generate.predictors {predictors}")
    scored = {name: score_predictor(name, *inputs[name], context_lines=context_lines, protocol=protocol,
                                    min_confidence=min_confidence.get(name))
              for name in predictors}
    ev = Evaluation(scores={name: scores for name, (scores, _) in scored.items()})
    for name, (scores, counts) in scored.items():
        summary = summarize(scores)
        cis = intervals(scores, samples=bootstrap_samples, seed=seed)
        tests = {}
        if name != reference:
            tests = paired_tests(scores, scored[reference][0], samples=bootstrap_samples, seed=seed)
        headline = {"n": summary["n"]}
        for m in HEADLINE:
            headline.update({m: summary[m], f"{m}_lo": cis[f"{m}_lo"], f"{m}_hi": cis[f"{m}_hi"]})
            if f"{m}_p" in tests:
                headline[f"{m}_p"] = tests[f"{m}_p"]
        rows, curve = coverage.coverage_tables(name, scores, coverage.confidences(inputs[name][0]), summarize, HEADLINE,
                                               abstained=counts.get(coverage.NO_SUGGESTION))
        ev.coverage_rows += rows
        ev.risk_rows += curve
        details = {**summary, **cis, **tests, **counts, **coverage.details(rows, HEADLINE)}
        ev.headline.update({f"{name}.{k}": v for k, v in headline.items()})
        ev.details.update({f"{name}.{k}": v for k, v in details.items() if k not in headline})
        ev.predictor_rows.append(_row(summary, cis, predictor=name))
        by_language: dict[str, list[ExampleScore]] = defaultdict(list)
        for s in scores:
            by_language[s.language].append(s)
        for language, group in sorted(by_language.items()):
            ev.language_rows.append(
                _row(
                    summarize(group),
                    intervals(group, samples=bootstrap_samples, seed=seed),
                    predictor=name,
                    language=language,
                    group=f"{language} / {name}",
                )
            )
    return ev
