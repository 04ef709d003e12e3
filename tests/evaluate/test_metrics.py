"""The metrics on hand-built predictions whose scores are known: the paper's hunk-based ones
(nep/evaluate/metrics.py) on cases built so that they DISAGREE with nep's chunk-based variants
(nep/evaluate/refined.py), final-newline cases, Zed's delta-chrF and exact lines, nep's edit chrF and edit similarity."""

from __future__ import annotations

import pytest

from nep.evaluate.metrics import (
    changed_lines,
    chrf,
    delta_chrf,
    delta_chrf_8bf0582,
    edit_chrf,
    edit_similarity,
    edit_text,
    exact_lines,
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
    assert s.delta_chrf == 0.0 and s.edit_chrf == 0.0 and s.edit_similarity == 0.0
    assert (s.line_true_positives, s.line_false_positives, s.line_false_negatives) == (0, 0, 1)
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


def test_edit_chrf_scores_the_edit_text():
    truth = add_after(CURRENT, 10, "total = compute(items)")
    close = add_after(CURRENT, 10, "total = compute(item)")
    elsewhere = add_after(CURRENT, 25, "total = compute(items)")  # same line elsewhere: same edit text
    wrong = add_after(CURRENT, 10, "zzz")
    assert edit_chrf(CURRENT, truth, truth) == 1.0
    assert 0.8 < edit_chrf(CURRENT, truth, close) < 1.0
    assert edit_chrf(CURRENT, truth, elsewhere) == 1.0
    assert edit_chrf(CURRENT, truth, wrong) < 0.2
    assert edit_chrf(CURRENT, truth, CURRENT) == 0.0
    assert edit_chrf(CURRENT, CURRENT, CURRENT) == 1.0  # no edit expected, none made


# ---------------------------------------------------------------- Zed's delta-chrF
# delta_chrf_8bf0582: Zed's unit tests of commit 8bf0582 (crates/edit_prediction_cli/src/metrics.rs),
# its texts as the diffs spell them; Zed's bounds are on 0-100, nep reports 0-1. The current
# definition (`delta_chrf`) has its own Zed cases in test_zed.py.
ZED_CASES = [
    # (name, original, expected, actual, low, high)
    ("perfect match", 'fn main() {    println!("Hello");}', 'fn main() {    println!("Hello, World!");}',
     'fn main() {    println!("Hello, World!");}', 0.9999, 1.0),
    ("wrong edit", "one two three", "one three", "one two four", 0.20, 0.40),
    ("right place, wrong value", "let x = 42;", "let x = 100;", "let x = 99;", 0.40, 0.60),
    ("missed edit", "prefix old suffix", "prefix new suffix", "prefix old suffix", 0.0, 0.20),
    ("extra edit", "helloworld", "helloworld", "helloextraworld", 0.0, 0.20),
    ("no changes", "unchanged text", "unchanged text", "unchanged text", 0.9999, 1.0),
]


@pytest.mark.parametrize(("name", "original", "expected", "actual", "low", "high"), ZED_CASES)
def test_delta_chrf_8bf0582_meets_zeds_unit_tests(name, original, expected, actual, low, high):
    score_ = delta_chrf_8bf0582(original, expected, actual)
    assert low < score_ < high or (high == 1.0 and score_ == 1.0) or (low == 0.0 and score_ == 0.0), name


def test_delta_chrf_8bf0582_hand_computed():
    # the same edit: every order with an n-gram has P = R = 1; orders 4-6 have none on either side (1, 1)
    assert delta_chrf_8bf0582("ab", "abc", "abc") == 1.0
    # a missed edit on a short text: orders 1-3 P = R = 0, orders 4-6 both deltas empty → P = R = 1/2
    assert delta_chrf_8bf0582("ab", "abc", "ab") == pytest.approx(0.5)
    # "abcd": c → X expected, c → Y made. Orders 1-4 each: the deletions match (tp), the insertions
    # do not (fp = fn = tp) → P = R = 1/2; orders 5-6 empty → 1. P = R = (4/2 + 2)/6 = 2/3 → F = 2/3
    assert delta_chrf_8bf0582("abcd", "abXd", "abYd") == pytest.approx(2 / 3)
    # whitespace is removed: the same texts otherwise
    assert delta_chrf_8bf0582("a b c d", "a b X d", "a\tb  Y\nd") == pytest.approx(2 / 3)
    # ... but the all-equal shortcut reads the raw texts: a whitespace-only expected change leaves
    # zero deltas (orders 1-2: no count on either side → P = R = 0; orders 3-6 empty → 1) → 2/3
    assert delta_chrf_8bf0582("a b", "a  b", "a b") == pytest.approx(2 / 3)
    # F-beta, beta 2, from unequal P and R: original "ab", expected "abc", actual "abcd".
    # n=1: exp {c}, act {c, d} → P 1/2, R 1; n=2: {bc} vs {bc, cd} → 1/2, 1; n=3: {abc} vs {abc, bcd}
    # → 1/2, 1; n=4: exp empty, act {abcd} → P 0 (tp + fp = 1), R 0 (tp + fn = 0); n=5-6 empty → 1, 1
    p, r = (3 * 0.5 + 0 + 2) / 6, (3 * 1 + 0 + 2) / 6
    assert delta_chrf_8bf0582("ab", "abc", "abcd") == pytest.approx(5 * p * r / (4 * p + r))


def test_delta_chrf_8bf0582_counts_a_deletion_as_its_own_token():
    # "axb": x deleted expected, another x inserted. n=1: {¬x} vs {x} → 0, 0; n=2: {¬ax, ¬xb, ab} vs
    # {xx} → 0, 0; n=3: {¬axb} vs {¬axb, axx, xxb} → P 1/3, R 1; n=4: expected empty, actual {axxb}
    # → 0, 0; n=5-6 empty → 1, 1
    p, r = (1 / 3 + 2) / 6, (1 + 2) / 6
    assert delta_chrf_8bf0582("axb", "ab", "axxb") == pytest.approx(5 * p * r / (4 * p + r))
    # Rust's whitespace set: U+001C is not whitespace there (Python's str.split would drop it)
    assert delta_chrf_8bf0582("ab", "a\x1cb", "ab") < 1.0


def _file(n: int) -> str:
    return "".join(f"    value_{i} = compute(items[{i}], scale={i % 7})\n" for i in range(n))


@pytest.mark.parametrize("name", ["unchanged", "sentence", "loop"])
def test_delta_chrf_scores_a_non_attempt_near_0(name):
    current = _file(40)
    truth = current.replace("value_20 = ", "value_20 = 2 * ", 1)
    answer = {
        "unchanged": current,
        "sentence": "The next edit doubles value_20.\n",
        "loop": "#\n" * 200,
    }[name]
    for definition in (delta_chrf, delta_chrf_8bf0582):
        assert definition(current, truth, answer) < 0.05
        assert definition(current, truth, truth) == 1.0


# ---------------------------------------------------------------- Zed's exact lines
def test_exact_lines_are_sets_of_changed_lines():
    truth = add_after(CURRENT, 10, "x").replace("line 20\n", "line twenty\n")
    assert changed_lines(CURRENT, truth) == {"+x", "-line 20", "+line twenty"}
    assert exact_lines(CURRENT, truth, truth) == (3, 0, 0)
    # one right line, one wrong, two missed
    guess = add_after(CURRENT, 10, "x").replace("line 25\n", "line 25!\n")
    assert exact_lines(CURRENT, truth, guess) == (1, 2, 2)
    # a set: the same added line twice counts once (Zed's line_match_score collects a HashSet)
    twice = add_after(add_after(CURRENT, 10, "x"), 12, "x")
    assert changed_lines(CURRENT, twice) == {"+x"}
    assert exact_lines(CURRENT, add_after(CURRENT, 10, "x"), twice) == (1, 0, 0)
    # a final newline is no line
    assert changed_lines(CURRENT, CURRENT.rstrip("\n")) == set()


def test_edit_similarity_is_normalized_levenshtein():
    assert edit_similarity("kitten", "sitting") == pytest.approx(1 - 3 / 7)
    assert edit_similarity("abc", "abc") == 1.0 and edit_similarity("", "") == 1.0
    assert edit_similarity("abcd", "") == 0.0
