"""Scoring next-edit predictions: the paper's four metrics, their agreement with the judge, and more.

Every line-level metric compares edit chunks (nep.edits.compute_chunks) taken against the
*current* version: the true chunks are current → ground truth, the predicted ones current →
prediction. A missing final newline is not an edit (texts are compared with one added).

- exact_match: prediction == ground truth. exact_match_ws: equal once all whitespace is removed.
- partial_match: the ground truth's first chunk is among the prediction's chunks (same lines of
  the current version replaced by the same new lines).
- position_match: one of the prediction's chunks sits where the ground truth's first chunk does:
  the `context_lines` unchanged lines before it and after it in the current version are the same.
- location_match: the prediction's first changed line is the ground truth's first changed line.
- edit precision/recall/F1: predicted chunks that are true chunks, micro-averaged over examples.
- reversal: a prediction chunk undoes one of the history chunks (original → current) that the
  ground truth does not undo.
- llm_judge: the share of judged examples judged yes; agreement.<metric>: the share of judged
  examples where the metric (1/0) equals the judgment.

Undefined cases (the paper's scripts crash on them): a prediction with no chunk (it equals the
current version, or nothing could be extracted) scores 0 on partial, position and location. A
ground truth with no chunk makes those three undefined: the example is left out of them (and of
their agreement) and counted in `no_true_chunk`. Rates with an empty denominator are 0.0.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from nep.edits import Chunk, compute_chunks, split_lines

# Metrics the per-language and per-predictor tables show (besides n).
MAIN_METRICS = (
    "exact_match",
    "partial_match",
    "position_match",
    "llm_judge",
    "edit_f1",
    "location_accuracy",
    "reversal_rate",
)
AGREEMENT_METRICS = ("exact_match", "partial_match", "position_match")


def with_final_newline(text: str) -> str:
    return text if not text or text.endswith("\n") else text + "\n"


def squash_whitespace(text: str) -> str:
    return "".join(text.split())


def chunk_key(chunk: Chunk) -> tuple[int, int, tuple[str, ...]]:
    """What makes two chunks against the same base the same edit: the base span and the new lines."""
    return chunk.old_start, chunk.old_end, chunk.new_lines


def chunk_context(base_lines: list[str], chunk: Chunk, k: int) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The k unchanged base lines before and after a chunk (fewer at the file's ends)."""
    before = tuple(base_lines[max(0, chunk.old_start - k) : chunk.old_start])
    after = tuple(base_lines[chunk.old_end : chunk.old_end + k])
    return before, after


@dataclass(frozen=True)
class ExampleScore:
    """One prediction's scores. None = undefined for this example (see the module docstring)."""

    language: str
    extracted: bool
    exact_match: bool
    exact_match_ws: bool
    partial_match: bool | None
    position_match: bool | None
    location_match: bool | None
    reversal: bool | None  # None when the history has no chunk
    true_chunks: int
    predicted_chunks: int
    matched_chunks: int
    judgment: int | None  # 1/0, None when not judged
    latency_s: float | None = None
    output_tokens: int | None = None


def score_example(
    *,
    original: str,
    current: str,
    ground_truth: str,
    prediction: str,
    extracted: bool = True,
    judgment: int | None = None,
    language: str = "",
    context_lines: int = 3,
    latency_s: float | None = None,
    output_tokens: int | None = None,
) -> ExampleScore:
    """Score one prediction of the next version against the ground truth."""
    original, current = with_final_newline(original), with_final_newline(current)
    truth = with_final_newline(ground_truth)
    pred = with_final_newline(prediction) if extracted else None

    cur_lines = split_lines(current)
    true_chunks = compute_chunks(cur_lines, split_lines(truth))
    pred_chunks = compute_chunks(cur_lines, split_lines(pred)) if pred is not None else []
    true_keys = {chunk_key(c) for c in true_chunks}
    pred_keys = {chunk_key(c) for c in pred_chunks}

    partial = position = location = None
    if true_chunks:
        first = true_chunks[0]
        partial = chunk_key(first) in pred_keys
        target = chunk_context(cur_lines, first, context_lines)
        position = any(chunk_context(cur_lines, c, context_lines) == target for c in pred_chunks)
        location = bool(pred_chunks) and pred_chunks[0].old_start == first.old_start

    history = compute_chunks(original, cur_lines)
    reversal = None
    if history:
        undo = {(h.new_start, h.new_end, h.old_lines) for h in history}
        reversal = bool((pred_keys & undo) - true_keys)

    return ExampleScore(
        language=language,
        extracted=extracted,
        exact_match=pred is not None and pred == truth,
        exact_match_ws=pred is not None and squash_whitespace(pred) == squash_whitespace(truth),
        partial_match=partial,
        position_match=position,
        location_match=location,
        reversal=reversal,
        true_chunks=len(true_keys),
        predicted_chunks=len(pred_keys),
        matched_chunks=len(true_keys & pred_keys),
        judgment=judgment,
        latency_s=latency_s,
        output_tokens=output_tokens,
    )


def _mean(values: Iterable[float | None]) -> float:
    """Mean of the defined (non-None) values, so for bools the share of true ones; 0.0 when none is defined."""
    defined = [v for v in values if v is not None]
    return float(sum(defined) / len(defined)) if defined else 0.0


def summarize(scores: list[ExampleScore]) -> dict[str, float | int]:
    """Aggregate example scores into flat metrics (rates in [0, 1], counts as ints)."""
    tp = sum(s.matched_chunks for s in scores)
    n_pred = sum(s.predicted_chunks for s in scores)
    n_true = sum(s.true_chunks for s in scores)
    precision = tp / n_pred if n_pred else 0.0
    recall = tp / n_true if n_true else 0.0
    judged = [s for s in scores if s.judgment is not None]
    out: dict[str, float | int] = {
        "n": len(scores),
        "exact_match": _mean(s.exact_match for s in scores),
        "exact_match_ws": _mean(s.exact_match_ws for s in scores),
        "partial_match": _mean(s.partial_match for s in scores),
        "position_match": _mean(s.position_match for s in scores),
        "location_accuracy": _mean(s.location_match for s in scores),
        "no_true_chunk": sum(s.partial_match is None for s in scores),
        "edit_precision": precision,
        "edit_recall": recall,
        "edit_f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "reversal_rate": _mean(s.reversal for s in scores),
        "unextractable_rate": _mean(not s.extracted for s in scores),
        "llm_judge": _mean(s.judgment == 1 for s in judged),
        "judged": len(judged),
        "mean_latency_s": _mean(s.latency_s for s in scores),
        "mean_output_tokens": _mean(s.output_tokens for s in scores),
    }
    for name in AGREEMENT_METRICS:
        pairs = [(getattr(s, name), s.judgment) for s in judged if getattr(s, name) is not None]
        out[f"agreement.{name}"] = _mean(bool(m) == bool(j) for m, j in pairs)
    return out
