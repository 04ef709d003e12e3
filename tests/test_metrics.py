"""The evaluation metrics on hand-built predictions whose scores are known."""

from __future__ import annotations

import pytest

from nep.metrics import score_example, summarize

ORIGINAL = "".join(f"line {i}\n" for i in range(10))
# History: one line added after line 2. Ground truth: one more line added after line 6.
CURRENT = ORIGINAL.replace("line 2\n", "line 2\nadded in history\n")
TRUTH = CURRENT.replace("line 6\n", "line 6\nthe next edit\n")


def score(prediction: str, **kw):
    args = {"original": ORIGINAL, "current": CURRENT, "ground_truth": TRUTH, "prediction": prediction}
    return score_example(**{**args, **kw})


def test_exact_prediction_scores_everything():
    s = score(TRUTH)
    assert s.exact_match and s.exact_match_ws
    assert s.partial_match and s.position_match and s.location_match
    assert (s.true_chunks, s.predicted_chunks, s.matched_chunks) == (1, 1, 1)
    assert s.reversal is False


def test_missing_final_newline_is_not_an_edit():
    s = score(TRUTH.rstrip("\n"))
    assert s.exact_match and s.partial_match and s.predicted_chunks == 1


def test_whitespace_insensitive_exact_match():
    s = score(TRUTH.replace("the next edit", "  the   next edit\t"))
    assert not s.exact_match and s.exact_match_ws
    assert not s.partial_match and s.position_match  # same place, different text


def test_true_edit_plus_an_extra_one_is_partial_not_exact():
    s = score(TRUTH + "an extra line\n")
    assert not s.exact_match
    assert s.partial_match and s.position_match and s.location_match
    assert (s.predicted_chunks, s.matched_chunks) == (2, 1)


def test_same_place_other_text_is_position_not_partial():
    s = score(CURRENT.replace("line 6\n", "line 6\nsomething else\n"))
    assert not s.partial_match and s.position_match and s.location_match


def test_same_text_other_place_matches_nothing():
    s = score(CURRENT.replace("line 8\n", "line 8\nthe next edit\n"))
    assert not s.partial_match and not s.position_match and not s.location_match
    assert s.matched_chunks == 0


def test_position_match_compares_context_lines():
    # An insertion one line later shares the line before (k=0 compares nothing: every chunk matches).
    moved = CURRENT.replace("line 7\n", "line 7\nthe next edit\n")
    assert not score(moved, context_lines=3).position_match
    assert score(moved, context_lines=0).position_match


def test_prediction_without_chunk_scores_zero_not_crash():
    s = score(CURRENT)  # the identity prediction: no edit at all
    assert s.predicted_chunks == 0
    assert s.partial_match is False and s.position_match is False and s.location_match is False


def test_ground_truth_without_chunk_is_undefined_and_counted():
    s = score_example(original=ORIGINAL, current=CURRENT, ground_truth=CURRENT, prediction=TRUTH)
    assert s.partial_match is None and s.position_match is None and s.location_match is None
    summary = summarize([s, score(TRUTH)])
    assert summary["no_true_chunk"] == 1
    assert summary["partial_match"] == 1.0  # the undefined example is left out, not counted as 0
    assert summary["exact_match"] == 0.5  # exact match stays defined


def test_unextracted_output_counts_as_wrong():
    s = score("", extracted=False)
    assert not s.exact_match and not s.exact_match_ws and s.partial_match is False
    assert summarize([s])["unextractable_rate"] == 1.0


def test_reversal_of_history_is_detected():
    s = score(ORIGINAL)  # undoes the history's added line
    assert s.reversal is True and not s.partial_match
    # A ground truth that itself undoes the history chunk makes that undo correct, not a reversal.
    s2 = score_example(original=ORIGINAL, current=CURRENT, ground_truth=ORIGINAL, prediction=ORIGINAL)
    assert s2.reversal is False and s2.exact_match
    # No history chunk: reversal is undefined.
    assert score_example(original=CURRENT, current=CURRENT, ground_truth=TRUTH, prediction=TRUTH).reversal is None


def test_summary_rates_precision_recall_and_judge_agreement():
    scores = [
        score(TRUTH, judgment=1),  # exact; judge agrees
        score(TRUTH + "an extra line\n", judgment=1),  # partial, not exact; judge says yes
        score(CURRENT, judgment=0),  # no edit; judge agrees with every metric
        score(ORIGINAL, judgment=None, latency_s=2.0, output_tokens=10),  # reversal; not judged
    ]
    m = summarize(scores)
    assert m["n"] == 4
    assert m["exact_match"] == 0.25
    assert m["partial_match"] == 0.5
    assert m["reversal_rate"] == 0.25
    assert m["judged"] == 3
    assert m["llm_judge"] == pytest.approx(2 / 3)
    assert m["agreement.exact_match"] == pytest.approx(2 / 3)
    assert m["agreement.partial_match"] == 1.0
    # true chunks: 4 (one each); predicted: 1 + 2 + 0 + 1 = 4; matched: 2.
    assert m["edit_precision"] == 0.5 and m["edit_recall"] == 0.5 and m["edit_f1"] == 0.5
    assert m["mean_latency_s"] == 2.0 and m["mean_output_tokens"] == 10.0


def test_empty_summary_has_zero_rates():
    m = summarize([])
    assert m["n"] == 0 and m["exact_match"] == 0.0 and m["edit_f1"] == 0.0
