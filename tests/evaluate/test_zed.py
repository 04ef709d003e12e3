"""Zed's metrics (nep/evaluate/zed.py, kept_rate.py) on Zed's own unit-test cases, with Zed's expected
values: crates/edit_prediction_metrics/src/{patch_metrics,kept_rate,tokenize}.rs at the commits of
nep.evaluate.zed.ZED_COMMITS. Zed's texts are spelled out as its `indoc!` blocks produce them;
its delta chrF bounds are on 0-100, nep's on 0-1."""

from __future__ import annotations

from collections import Counter

import pytest

from nep.evaluate.kept_rate import CONTEXT, DISCARDED, KEPT, _lcs_masks, kept_rate, tokenize
from nep.evaluate.zed import (
    BETA,
    _classify,
    _delta_counts,
    added_brace_imbalance,
    braces_disbalance,
    collapse_whitespace,
    delta_chr_f,
    has_isolated_whitespace_changes,
    isolated_whitespace,
    ngram_counts,
)

# ---------------------------------------------------------------- delta chrF (patch_metrics.rs)

RANGES = [  # (name, original, expected, actual, low, high) from Zed's `mod test`
    ("perfect match", 'fn main() {    println!("Hello");}', 'fn main() {    println!("Hello, World!");}',
     'fn main() {    println!("Hello, World!");}', 0.9999, 1.0001),
    ("wrong edit", "one two three", "one three", "one two four", 0.20, 0.40),
    ("partial match", "let x = 42;", "let x = 100;", "let x = 99;", 0.40, 0.60),
    ("missed edit", "prefix old suffix", "prefix new suffix", "prefix old suffix", -0.0001, 0.20),
    ("extra edit", "helloworld", "helloworld", "helloextraworld", -0.0001, 0.20),
    ("no changes", "unchanged text", "unchanged text", "unchanged text", 0.9999, 1.0001),
]


@pytest.mark.parametrize(("name", "original", "expected", "actual", "low", "high"), RANGES)
def test_delta_chrf_meets_zeds_unit_tests(name, original, expected, actual, low, high):
    assert low < delta_chr_f(original, expected, actual).score < high, name


def test_delta_chrf_reports_counts_precision_and_recall():
    m = delta_chr_f("one two three", "one three", "one two four")
    assert 0.20 < m.score < 0.40
    assert m.true_positives > 0 and m.false_positives > 0 and m.false_negatives > 0
    assert 0 < m.precision < 1 and 0 < m.recall < 1
    assert BETA == 0.5
    # F-beta of the averaged precision and recall, precision weighted more
    assert m.score == pytest.approx(1.25 * m.precision * m.recall / (0.25 * m.precision + m.recall))


def _reference(original: str, expected: str, actual: str) -> float:
    """Zed's `delta_chr_f_reference`: the same on the whole collapsed texts, not the changed regions."""
    if original == expected == actual:
        return 1.0
    texts = [collapse_whitespace(t) for t in (original, expected, actual)]
    total_p = total_r = 0.0
    for n in range(1, 7):
        orig, exp, act = (ngram_counts(t, n) for t in texts)
        e, e_empty = _delta_counts(exp, orig)
        a, a_empty = _delta_counts(act, orig)
        if e_empty and a_empty:
            total_p, total_r = total_p + 1, total_r + 1
            continue
        tp, fp, fn = _classify(e, a)
        total_p += tp / (tp + fp) if tp + fp else 0.0
        total_r += tp / (tp + fn) if tp + fn else 0.0
    p, r = total_p / 6, total_r / 6
    return 0.0 if p + r == 0 else 1.25 * p * r / (0.25 * p + r)


# Zed's `test_optimized_equals_reference` cases: the changed-region version equals the whole-text one
OPTIMIZED_CASES = [
    ("hello world", "hello there", "hello world"),
    ("hello world", "hello there", "hello there"),
    ("unchanged", "unchanged", "unchanged"),
    ('fn main() { println!("Hello"); }', 'fn main() { println!("Hello, World!"); }',
     'fn main() { println!("Hello, World!"); }'),
    ('fn main() { println!("Hello"); }', 'fn main() { println!("Hello, World!"); }',
     'fn main() { println!("Goodbye"); }'),
    ("abcdef", "abcXYZdef", "abcdef"),
    ("abcdef", "abcXYZdef", "abcXYZdef"),
    ("abcdef", "abcXYZdef", "abcABCdef"),
    ("abcXYZdef", "abcdef", "abcXYZdef"),
    ("abcXYZdef", "abcdef", "abcdef"),
    ("one two three four", "one THREE four", "one two FOUR"),
    ("a", "b", "c"),
    ("", "abc", ""),
    ("abc", "", "abc"),
    ("This is a longer piece of text that contains many words and characters to process",
     "This is a longer piece of TEXT that contains many words and characters to process",
     "This is a longer piece of text that contains many words and characters to process"),
    ("ORIGINAL start of text", "NEW start of text", "DIFFERENT start of text"),
    ("text ending ORIGINAL", "text ending NEW", "text ending DIFFERENT"),
    ("hello   world", "hello   there", "hello   world"),
    ("a b c d", "a X c d", "a Y c d"),
]


@pytest.mark.parametrize("case", OPTIMIZED_CASES)
def test_delta_chrf_on_changed_regions_equals_the_whole_text_reference(case):
    assert delta_chr_f(*case).score == pytest.approx(_reference(*case), abs=1e-12)


def test_whitespace_is_collapsed_not_removed():
    assert collapse_whitespace("a  \t b\n\n\nc \n d") == "a b\nc \n d"
    # a changed indentation width is no edit; a space removed between tokens is one
    assert delta_chr_f("if x:\n  y", "if x:\n    y = 1", "if x:\n  y = 1").score == 1.0
    # removing the space is an edit (missed here): orders 1-3 score 0, orders 4-6 have no n-gram
    # on either side of either edit (1, 1): P = R = 1/2
    assert delta_chr_f("a b", "ab", "a b").score == pytest.approx(0.5)


# ---------------------------------------------------------------- braces, isolated whitespace


def test_braces_disbalance():
    assert braces_disbalance("let x = { 1 + 2 };") == 0
    assert braces_disbalance("let x = { 1 + 2") == 1
    assert braces_disbalance("let x = { 1 + 2 )") == 2
    # a prediction is scored by the imbalance it adds, never below 0
    assert added_brace_imbalance("f(", "f(x") == 0 and added_brace_imbalance("f()", "f((x)") == 1
    assert added_brace_imbalance("f((", "f()") == 0


ISOLATED = [  # (Zed's test, patch, expected)
    ("purely whitespace", '@@ -1,3 +1,4 @@\n fn main() {\n+\n     println!("hello");\n }\n', True),
    ("adjacent to real change", '@@ -1,3 +1,4 @@\n fn main() {\n+\n+    let x = 1;\n     println!("hello");\n }\n', False),
    ("no whitespace changes", '@@ -1,3 +1,3 @@\n fn main() {\n-    println!("hello");\n+    println!("world");\n }\n',
     False),
    ("deletion", '@@ -1,4 +1,3 @@\n fn main() {\n-\n     println!("hello");\n }\n', True),
    ("mixed groups", '@@ -1,7 +1,8 @@\n fn main() {\n+\n     let x = 1;\n-    let y = 2;\n+    let y = 3;\n\n+\n'
     '     println!("hello");\n }\n', True),
    ("empty patch", "", False),
]


@pytest.mark.parametrize(("name", "patch", "expected"), ISOLATED)
def test_isolated_whitespace_changes(name, patch, expected):
    assert has_isolated_whitespace_changes(patch) is expected, name


def test_isolated_whitespace_of_two_texts():
    current = "def f():\n    a = 1\n    return a\n"
    assert isolated_whitespace(current, current.replace("    a = 1\n", "    a = 1\n\n"))
    assert not isolated_whitespace(current, current.replace("    a = 1\n", "    a = 2\n\n"))
    assert not isolated_whitespace(current, current)


# ---------------------------------------------------------------- tokens (tokenize.rs)


def test_tokenizes_code():
    assert tokenize("hello world") == ["hello", " ", "world"]
    assert tokenize("foo_bar123 + baz") == ["foo", "_", "bar123", " ", "+", " ", "baz"]
    assert tokenize('print("hello")') == ["print", "(", '"', "hello", '"', ")"]
    assert tokenize("hello_world") == ["hello", "_", "world"]
    assert tokenize("fn();") == ["fn", "(", ")", ";"]


def test_tokenizes_identifier_case_styles():
    assert tokenize("camelCase PascalCase snake_case") == [
        "camel", "Case", " ", "Pascal", "Case", " ", "snake", "_", "case"]
    assert tokenize("myHTTPServer __private_value foo__bar") == [
        "my", "HTTP", "Server", " ", "__", "private", "_", "value", " ", "foo", "__", "bar"]
    assert tokenize("XMLHttpRequest Version2Update") == ["XML", "Http", "Request", " ", "Version2", "Update"]


def test_tokenizes_grouped_punctuation():
    assert tokenize("a::b -> c != d ..= e") == [
        "a", "::", "b", " ", "->", " ", "c", " ", "!=", " ", "d", " ", "..=", " ", "e"]
    assert tokenize("foo?.bar ?? baz") == ["foo", "?.", "bar", " ", "??", " ", "baz"]


def test_tokenize_whitespace_runs():
    assert tokenize("  ") == ["  "]
    assert tokenize("  \n   foo") == ["  ", "\n", "   ", "foo"]
    assert tokenize("\r\n\nfoo") == ["\r\n\n", "foo"]


# ---------------------------------------------------------------- kept rate (kept_rate.rs)


def test_lcs_keep_masks():
    assert _lcs_masks(list("abcde"), list("ace")) == ([True, False, True, False, True], [True, True, True])
    assert _lcs_masks([], ["x"]) == ([], [False])
    a, b = ["x", "a", "x", "b"], ["a", "x", "b", "x"]
    a_mask, b_mask = _lcs_masks(a, b)
    assert a_mask == _lcs_masks(a, b, want_b=False)[0] and b_mask == _lcs_masks(b, a, want_b=False)[0]


def test_rate_extremes():
    same = kept_rate("foo bar", "foo bar", "foo bar")
    assert (same.kept_rate, same.recall_rate, same.candidate_new_chars) == (1.0, 1.0, 0)
    assert set(same.annotations) == {CONTEXT}
    accepted = kept_rate("old", "new", "new")
    assert accepted.kept_rate == pytest.approx(1.0) and accepted.recall_rate == pytest.approx(1.0)
    discarded = kept_rate("old", "old", "new")
    assert discarded.kept_rate == 0.0 and discarded.recall_rate == 0.0


def test_pure_addition():
    kept = kept_rate("", "brand new line\n", "brand new line\n")
    assert kept.kept_chars == kept.candidate_new_chars and set(kept.annotations) == {KEPT}
    discarded = kept_rate("", "brand new line\n", "something completely different\n")
    assert discarded.kept_chars < discarded.candidate_new_chars


def test_decoy_when_base_excluded():
    base = "    decoy.when(mock_sync_hardware_api.sp()).then_return(SpeedStatus.IDLE)\n"
    candidate = "    decoy.when(mock_sync_module_hardware.speed_status).then_return(SpeedStatus.IDLE)\n"
    result = kept_rate(base, candidate, candidate)
    assert result.candidate_new_chars == len("mock_sync_module_hardware") + len("speed_status")
    assert result.correctly_deleted_chars > 0
    assert result.kept_rate == pytest.approx(1.0) and result.recall_rate == pytest.approx(1.0)


def test_missing_deletion():
    result = kept_rate("fn example() {\n    epr\n", 'fn example() {\n    epr\neprintln!("");\n',
                       'fn example() {\neprintln!("");\n')
    assert result.kept_rate == pytest.approx(14 / 15)
    assert (result.kept_chars, result.discarded_chars) == (14, 1)


def test_empty_prediction():
    result = kept_rate("old line\n", "", "new line\n")
    assert result.candidate_new_chars == 0 and result.candidate_deleted_chars > 0
    assert 0 < result.correctly_deleted_chars < result.candidate_deleted_chars
    assert 0 < result.kept_rate < 1 and 0 < result.recall_rate < 1


def test_partial_kept():
    result = kept_rate("old\n", "alpha\nbeta\ngamma\n", "alpha\ngamma\n")
    assert result.kept_chars > 0 and result.discarded_chars > 0 and 0 < result.kept_rate < 1


def test_bails_for_dirty_final():
    base = "fn example() {\n    work();\n}\n"
    candidate = "fn example() {\n    work();\n    predicted();\n}\n"
    reference = "fn example() {\n    work();\n    " + "settled();\n    " * (512 // 8 + 64) + "\n}\n"
    result = kept_rate(base, candidate, reference)
    assert (result.kept_rate, result.recall_rate, result.kept_chars) == (0.0, 0.0, 0)
    assert result.discarded_chars == result.candidate_new_chars


EPR_BASE = "fn example() {\n    epr\n"
EPR_CANDIDATE = 'fn example() {\n    eprintln!("hello world!");\n'
EPR_REFERENCE = 'fn example() {\n    eprintln!("");\n'


def test_eprintln_token_alignment():
    result = kept_rate(EPR_BASE, EPR_CANDIDATE, EPR_REFERENCE)
    assert result.discarded_chars > 0 and result.kept_chars > 0 and 0 < result.kept_rate < 1
    assert (result.kept_chars, result.discarded_chars) == (14, 12)


def test_kept_rate_treats_unchanged_stale_text_as_context():
    candidate = "a=formula;\nb=old\n"
    result = kept_rate("a=fomr\nb=old\n", candidate, "a=formula;\nb=new\n")
    assert result.candidate_new_chars == result.kept_chars == len("formula;")
    assert result.discarded_chars == 0
    assert result.candidate_deleted_chars == result.correctly_deleted_chars == len("fomr")
    assert result.kept_rate == pytest.approx(1.0) and result.recall_rate == pytest.approx(2 / 3)
    assert result.annotations[tokenize(candidate).index("old")] == CONTEXT


def test_annotations_rename():
    base, candidate = "    foo(old_name)\n", "    foo(new_name)\n"
    result = kept_rate(base, candidate, candidate)
    assert result.candidate_new_chars == len("new_name")
    assert result.candidate_deleted_chars == result.reference_deleted_chars == len("old_name")
    assert result.correctly_deleted_chars == len("old_name") and result.recall_rate == pytest.approx(1.0)
    tokens = tokenize(candidate)
    assert len(result.annotations) == len(tokens)
    for token, annotation in zip(tokens, result.annotations, strict=True):
        assert annotation == (KEPT if token in ("new", "_", "name") else CONTEXT), token


def test_annotations_eprintln_coloring():
    result = kept_rate(EPR_BASE, EPR_CANDIDATE, EPR_REFERENCE)
    at = tokenize(EPR_CANDIDATE).index("eprintln")
    assert set(result.annotations[:at]) == {CONTEXT}
    assert list(result.annotations[at : at + 11]) == [KEPT] * 4 + [DISCARDED] * 4 + [KEPT] * 3
    assert result.annotations[-1] == CONTEXT


def test_repetitive_tokens_remain_discarded():
    result = kept_rate("foo + foo + foo + foo + foo\n" * 16, "foo + foo + prediction_token + foo + foo\n" * 16,
                       "foo + foo + kept_token + foo + foo\n" * 16)
    assert result.kept_chars == 0 and result.correctly_deleted_chars == len("foo") * 16
    assert result.discarded_chars == result.candidate_new_chars == len("prediction_token") * 16
    assert result.kept_rate > 0 and result.recall_rate > 0


def test_counts_are_utf8_bytes_as_in_zed():
    result = kept_rate("x = 1\n", "x = 'é'\n", "x = 'é'\n")
    assert result.candidate_new_chars == len("'é'".encode()) == 4
    assert Counter(result.annotations)[KEPT] == 3
