"""nep's refined, chunk-based variants of the paper's metrics (the paper's own: nep/evaluate/metrics.py).

Edits here are *chunks* (nep.core.edits.compute_chunks: one non-equal difflib opcode each), taken
against the current version with a final newline added to every text, so a missing final newline
is never an edit. Unlike the paper's hunks, nearby changes stay separate chunks, whitespace-only
chunks count, and a chunk is compared by the lines it replaces and its new lines (no `@@` header,
whose line counts shift with every earlier change).

- exact_match_eol: prediction == ground truth once both end with a newline.
- exact_match_ws: equal once all whitespace is removed.
- partial_match_chunk: the ground truth's first chunk is among the prediction's chunks.
- position_match_chunk: a prediction chunk has the same `context_lines` unchanged lines before
  and after it as the ground truth's first chunk.
- location_match: the prediction's first changed line is the ground truth's first changed line.
- edit precision/recall (true/predicted/matched chunk counts, micro-averaged by the evaluation).
- reversal: a prediction chunk undoes a history chunk (original → current) the ground truth keeps.
"""

from __future__ import annotations

from dataclasses import dataclass

from nep.core.edits import Chunk, compute_chunks, split_lines


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
class RefinedScores:
    exact_match_eol: bool
    exact_match_ws: bool
    partial_match_chunk: bool | None  # None: the ground truth has no chunk
    position_match_chunk: bool | None
    location_match: bool | None
    reversal: bool | None  # None: the history has no chunk
    true_chunks: int
    predicted_chunks: int
    matched_chunks: int


def refined_scores(
    *, original: str, current: str, ground_truth: str, prediction: str | None, context_lines: int
) -> RefinedScores:
    """The chunk-based scores of one prediction; `prediction=None` (nothing extracted) scores 0."""
    original, current = with_final_newline(original), with_final_newline(current)
    truth = with_final_newline(ground_truth)
    pred = None if prediction is None else with_final_newline(prediction)

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

    return RefinedScores(
        exact_match_eol=pred is not None and pred == truth,
        exact_match_ws=pred is not None and squash_whitespace(pred) == squash_whitespace(truth),
        partial_match_chunk=partial,
        position_match_chunk=position,
        location_match=location,
        reversal=reversal,
        true_chunks=len(true_keys),
        predicted_chunks=len(pred_keys),
        matched_chunks=len(true_keys & pred_keys),
    )
