"""The metrics on hand-built predictions whose scores are known: the paper's hunk-based ones
(nep/evaluate/metrics.py) on cases built so that they DISAGREE with nep's chunk-based variants
(nep/evaluate/refined.py), final-newline cases, delta-chrF and edit similarity."""

from __future__ import annotations

import pytest

from nep.evaluate.metrics import (
    chrf,
    delta_chrf,
    edit_similarity,
    edit_text,
    hunks,
    paper_scores,
    score_example,
)

CURRENT = "".join(f"line {i}\n" for i in range(30))
ORIGINAL = CURRENT.replace("line 1\n", "")  # history: "line 1" was added


def add_after(text: str, n: int, new: str) -> str:
    return text.replace(f"line {n}\n", f"line {n}\n{new}\n", 1)


def score(truth: str, prediction: str, **kw):
    return score_example(original=ORIGINAL, current=CURRENT, ground_truth=truth, prediction=prediction, **kw)


# ---------------------------------------------------------------- the paper's hunks
def test_hunks_are_unified_diff_hunks_with_header_and_context():
    (h,) = hunks(CURRENT, add_after(CURRENT, 10, "new"))
    assert h == (
        "@@ -9,6 +9,7 @@",
        " line 8", " line 9", " line 10", "+new", " line 11", " line 12", " line 13",
    )


def test_nearby_changes_share_one_hunk_far_ones_do_not():
    near = add_after(add_after(CURRENT, 10, "a"), 15, "b")  # 5 unchanged lines apart: one hunk
    far = add_after(add_after(CURRENT, 10, "a"), 17, "b")  # 7 apart: two hunks
    assert len(hunks(CURRENT, near)) == 1 and len(hunks(CURRENT, far)) == 2


def test_blank_only_hunks_are_dropped():
    blank = add_after(add_after(CURRENT, 3, "   "), 20, "x")
    (h,) = hunks(CURRENT, blank)
    assert "+x" in h
    assert hunks(CURRENT, add_after(CURRENT, 3, "")) == []


def test_final_newline_and_line_ends_are_not_hunks():
    assert hunks(CURRENT, CURRENT.rstrip("\n")) == []
    assert hunks(CURRENT, CURRENT.replace("\n", "\r\n")) == []


# ---------------------------------------------------------------- paper vs refined: disagreements
def test_merged_hunk_paper_misses_what_chunks_match():
    """Truth edits two nearby places (one hunk); the prediction makes only the first edit."""
    truth = add_after(add_after(CURRENT, 10, "a"), 14, "b")
    s = score(truth, add_after(CURRENT, 10, "a"))
    assert (s.partial_match, s.position_match) == (False, False)  # the paper's: the whole hunk
    assert (s.partial_match_chunk, s.position_match_chunk) == (True, True)  # nep's: the first chunk


def test_earlier_extra_edit_shifts_the_hunk_header():
    """The true edit plus an unrelated one far above: the true hunk's `@@ +c` start moves by one."""
    truth = add_after(CURRENT, 20, "the edit")
    s = score(truth, add_after(truth, 2, "extra"))
    assert s.partial_match is False and s.position_match is True  # header differs, context the same
    assert s.partial_match_chunk is True and s.position_match_chunk is True


def test_whitespace_only_first_edit_paper_skips_chunks_keep():
    """Truth adds a blank line high up, then a real line far below; the prediction adds only the
    real line. The paper drops the blank hunk, so its first hunk is the real one."""
    truth = add_after(add_after(CURRENT, 2, ""), 20, "real")
    s = score(truth, add_after(CURRENT, 20, "real"))
    assert s.position_match is True and s.partial_match is False  # +c shifted by the blank line
    assert s.position_match_chunk is False and s.partial_match_chunk is False  # first chunk: the blank line


def test_prediction_with_only_blank_changes_has_no_hunk():
    truth = add_after(CURRENT, 20, "real")
    s = score(truth, add_after(CURRENT, 20, "  "))
    assert (s.partial_match, s.position_match) == (False, False)
    assert s.position_match_chunk is True  # a chunk at the same place


# ---------------------------------------------------------------- final newline
def test_truth_without_final_newline():
    truth = add_after(CURRENT, 10, "x").rstrip("\n")
    with_eol = truth + "\n"
    assert paper_scores(CURRENT, truth, with_eol) == {
        "exact_match": False, "partial_match": True, "position_match": True
    }
    s = score(truth, with_eol)
    assert not s.exact_match and s.exact_match_eol and s.partial_match_chunk
    assert paper_scores(CURRENT, truth, truth)["exact_match"] is True


def test_prediction_without_final_newline():
    truth = add_after(CURRENT, 10, "x")
    s = score(truth, truth.rstrip("\n"))
    assert not s.exact_match and s.exact_match_eol and s.partial_match and s.position_match


def test_exact_prediction_scores_everything():
    truth = add_after(CURRENT, 10, "x")
    s = score(truth, truth)
    assert s.exact_match and s.partial_match and s.position_match and s.exact_match_ws
    assert s.delta_chrf == 1.0 and s.edit_similarity == 1.0
    assert (s.true_chunks, s.predicted_chunks, s.matched_chunks) == (1, 1, 1)
    assert s.location_match is True and s.reversal is False


# ---------------------------------------------------------------- undefined and missing cases
def test_truth_without_hunk_is_undefined():
    assert paper_scores(CURRENT, CURRENT, add_after(CURRENT, 3, "x")) == {
        "exact_match": False, "partial_match": None, "position_match": None
    }
    blank_truth = add_after(CURRENT, 3, "")  # its only change is blank: a chunk, but no hunk
    s = score(blank_truth, blank_truth)
    assert s.exact_match and s.partial_match is None and s.partial_match_chunk is True


def test_prediction_without_edit_scores_zero():
    truth = add_after(CURRENT, 10, "x")
    s = score(truth, CURRENT)
    assert (s.partial_match, s.position_match, s.partial_match_chunk, s.location_match) == (False,) * 4
    assert s.delta_chrf == 0.0


@pytest.mark.parametrize("kw", [{"extracted": False}, {"missing": True}])
def test_unextracted_or_missing_prediction_scores_zero(kw):
    truth = add_after(CURRENT, 10, "x")
    s = score(truth, truth, **kw)  # even an output equal to the truth
    assert not s.exact_match and s.partial_match is False and s.position_match is False
    assert not s.exact_match_eol and s.partial_match_chunk is False
    assert s.delta_chrf == 0.0 and s.edit_similarity == 0.0
    assert score(CURRENT, "", **kw).partial_match is None  # undefined stays undefined


def test_reversal_of_history_is_detected():
    truth = add_after(CURRENT, 10, "x")
    assert score(truth, ORIGINAL).reversal is True
    assert score(ORIGINAL, ORIGINAL).reversal is False  # the truth itself undoes it


def test_position_chunk_context_lines():
    truth = add_after(CURRENT, 10, "x")
    moved = add_after(CURRENT, 11, "x")
    assert score(truth, moved, context_lines=3).position_match_chunk is False
    assert score(truth, moved, context_lines=0).position_match_chunk is True


# ---------------------------------------------------------------- delta-chrF, edit similarity
def test_chrf_hand_computed():
    assert chrf("abc", "abc") == 1.0
    assert chrf("", "") == 1.0 and chrf("", "abc") == 0.0 and chrf("abc", "") == 0.0
    assert chrf("xyz", "abc") == 0.0
    # hyp "ab", ref "abc": n=1 P=1 R=2/3; n=2 P=1 R=1/2; n>=3: hyp has none (left out).
    p, r = 1.0, (2 / 3 + 1 / 2) / 2
    assert chrf("ab", "abc") == pytest.approx(5 * p * r / (4 * p + r))
    assert chrf("a b\tc", "abc") == 1.0  # whitespace removed


def test_edit_text_lists_changed_lines():
    truth = add_after(CURRENT, 10, "x").replace("line 20\n", "line twenty\n")
    assert edit_text(CURRENT, truth) == "+x\n-line 20\n+line twenty"
    assert edit_text(CURRENT, CURRENT.rstrip("\n")) == ""


def test_delta_chrf_scores_the_edit_not_the_file():
    truth = add_after(CURRENT, 10, "total = compute(items)")
    close = add_after(CURRENT, 10, "total = compute(item)")
    elsewhere = add_after(CURRENT, 25, "total = compute(items)")  # same line elsewhere: same edit text
    wrong = add_after(CURRENT, 10, "zzz")
    assert delta_chrf(CURRENT, truth, truth) == 1.0
    assert 0.8 < delta_chrf(CURRENT, truth, close) < 1.0
    assert delta_chrf(CURRENT, truth, elsewhere) == 1.0
    assert delta_chrf(CURRENT, truth, wrong) < 0.2
    assert delta_chrf(CURRENT, truth, CURRENT) == 0.0
    assert delta_chrf(CURRENT, CURRENT, CURRENT) == 1.0  # no edit expected, none made


def test_edit_similarity_is_normalized_levenshtein():
    assert edit_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert edit_similarity("abc", "abc") == 1.0 and edit_similarity("", "") == 1.0
    assert edit_similarity("abcd", "") == 0.0
