"""Zed's edit-prediction metrics, by name and commit, written for nep in Python.

Zed (zed-industries/zed) keeps them in `crates/edit_prediction_metrics`; nep follows the files as
read at these commits (ZED_COMMITS). Each function below says which Zed function it follows; Zed's
own unit-test cases are nep's tests (tests/evaluate/test_zed.py). Texts are whole files here, the
current version as Zed's "original" (Zed scores its cursor excerpt).

- `delta_chr_f`: delta chrF as of patch_metrics.rs: whitespace runs collapsed (a run of spaces and
  tabs becomes one space, a run of newlines one newline), character n-grams n = 1..6 of the
  *changed regions* only (the text between the common prefix and suffix of original and each
  edited text, with 5 characters of context on each side), deltas edited − original, a negative
  delta of g counted as a distinct "deleted g" token, per-order precision and recall averaged,
  F-beta with β = 0.5 (precision weighs more than recall). Returned on 0–1 with the averaged
  precision and recall and the summed counts (Zed reports the score on 0–100).
- `delta_chr_f_8bf0582`: the definition of commit 8bf0582 (crates/edit_prediction_cli/src/metrics.rs),
  which nep followed until 2026-12: whitespace removed, n-grams of the whole texts, β = 2.
- `kept_rate` (nep/evaluate/kept_rate.py): kept_rate.rs's `compute_kept_rate`: the share of the prediction's edit characters
  (characters it introduces plus characters of the original it deletes, by token-level LCS) that the
  reference edit also makes; `recall_rate` the share of the reference's edit characters covered.
- `braces_disbalance`: |#{ − #}| + |#( − #)| + |#[ − #]|; Zed scores a prediction by what it adds:
  `braces_disbalance(prediction) − braces_disbalance(original)`, floored at 0.
- `has_isolated_whitespace_changes`: the patch adds or deletes a blank line that no substantive
  change in the same run of changed lines accompanies.

Lengths are UTF-8 bytes, as Rust's `str::len` counts them; character classes follow Rust's
`char::is_whitespace` exactly and Python's `isalnum`/`isupper`/`islower`/`isnumeric` for Rust's
Unicode properties (the same on ASCII).
"""

from __future__ import annotations

import difflib
from collections import Counter
from typing import NamedTuple

ZED_REPOSITORY = "zed-industries/zed"
ZED_COMMITS = {  # file of crates/edit_prediction_metrics/src -> the commit nep read it at
    "patch_metrics.rs": "f01cffee06b19f371b64a948e393e47ab42cb400",
    "kept_rate.rs": "18f1046334bb5e1680601dc9ac9304c3aff4fea7",
    "tokenize.rs": "3d59fbec28ad84adf85441dce6735991b2f36404",
    "prediction_score.rs": "047fe9a41703b1d44b1900aece30c0b2701a6cd9",
}
OLD_COMMIT = "8bf0582"  # crates/edit_prediction_cli/src/metrics.rs: delta_chr_f_8bf0582

CHRF_ORDER = 6
BETA = 0.5  # patch_metrics.rs CHR_F_BETA
BETA_8BF0582 = 2.0
CONTEXT_CHARS = CHRF_ORDER - 1
MAX_DIRTY_LENGTH_DELTA = 512  # kept_rate.rs: a length difference beyond this scores 0 at once

# Rust's `char::is_whitespace` (the Unicode White_Space property); Python's str.isspace also counts
# U+001C..U+001F, so the set is spelled out.
WHITESPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
DELETED = "\N{NOT SIGN}"  # Zed's prefix of a "deleted n-gram" token


def ngram_counts(text: str, n: int) -> Counter[str]:
    """Character n-gram counts of `text` (none when it is shorter than n)."""
    return Counter([text[i : i + n] for i in range(len(text) - n + 1)])  # a list: ~1.5x a generator


def _delta_counts(after: Counter[str], before: Counter[str]) -> tuple[Counter[str], bool]:
    """The n-gram delta after − before as counts (a negative delta d of g → |d| of DELETED + g),
    and whether the delta, zero entries included, is empty (neither side has an n-gram)."""
    counts: Counter[str] = Counter()
    for gram in before.keys() | after.keys():
        d = after[gram] - before[gram]
        if d > 0:
            counts[gram] = d
        elif d < 0:
            counts[DELETED + gram] = -d
    return counts, not (before or after)


def _classify(expected: Counter[str], actual: Counter[str]) -> tuple[int, int, int]:
    """(true positives, false positives, false negatives) of two count bags."""
    tp = sum(min(n, actual[g]) for g, n in expected.items())
    fp = sum(max(n - expected[g], 0) for g, n in actual.items())
    fn = sum(max(n - actual[g], 0) for g, n in expected.items())
    return tp, fp, fn


def _ratio(a: int, b: int) -> float:
    return a / b if b else 0.0


def _f_beta(p: float, r: float, beta: float) -> float:
    b2 = beta * beta
    return 0.0 if p + r == 0 else (1 + b2) * p * r / (b2 * p + r)


# ---------------------------------------------------------------- delta chrF, current


class DeltaChrF(NamedTuple):
    """Zed's `DeltaChrFMetrics` on 0–1: the F-beta score, the precision and recall averaged over
    the n-gram orders, and the true/false positive/negative counts summed over them."""

    score: float
    precision: float
    recall: float
    true_positives: int = 0
    false_positives: int = 0
    false_negatives: int = 0


def collapse_whitespace(text: str) -> str:
    """Each run of whitespace other than newlines → one space, each run of newlines → one newline
    (a space run and a newline run next to each other both stay)."""
    out: list[str] = []
    last = ""
    for c in text:
        if c == "\n":
            if last != "\n":
                out.append(c)
                last = "\n"
        elif c in WHITESPACE:
            if last != " ":
                out.append(" ")
                last = " "
        else:
            out.append(c)
            last = ""
    return "".join(out)


def changed_regions(original: str, edited: str) -> tuple[str, str]:
    """The parts of both texts between their common prefix and suffix, with CONTEXT_CHARS more on
    each side (n-grams that cross the change); two empty strings when the texts are equal."""
    prefix = 0
    for a, b in zip(original, edited, strict=False):
        if a != b:
            break
        prefix += 1
    room = min(len(original), len(edited)) - prefix
    suffix = 0
    while suffix < room and original[-1 - suffix] == edited[-1 - suffix]:
        suffix += 1
    o_end, e_end = len(original) - suffix, len(edited) - suffix
    if prefix >= o_end and prefix >= e_end:
        return "", ""
    start = max(prefix - CONTEXT_CHARS, 0)
    return (original[start : min(o_end + CONTEXT_CHARS, len(original))],
            edited[start : min(e_end + CONTEXT_CHARS, len(edited))])


def delta_chr_f(original: str, expected: str, actual: str) -> DeltaChrF:
    """Zed's `delta_chr_f` (patch_metrics.rs): how well the edit original → actual matches the edit
    original → expected, on 0–1 (the module docstring has the definition)."""
    if original == expected == actual:
        return DeltaChrF(1.0, 1.0, 1.0)
    orig, exp, act = (collapse_whitespace(t) for t in (original, expected, actual))
    orig_for_exp, exp_region = changed_regions(orig, exp)
    orig_for_act, act_region = changed_regions(orig, act)
    total_p = total_r = 0.0
    tp = fp = fn = 0
    for n in range(1, CHRF_ORDER + 1):
        exp_counts, exp_empty = _delta_counts(ngram_counts(exp_region, n), ngram_counts(orig_for_exp, n))
        act_counts, act_empty = _delta_counts(ngram_counts(act_region, n), ngram_counts(orig_for_act, n))
        if exp_empty and act_empty:
            total_p, total_r = total_p + 1.0, total_r + 1.0
            continue
        t, f_pos, f_neg = _classify(exp_counts, act_counts)
        total_p, total_r = total_p + _ratio(t, t + f_pos), total_r + _ratio(t, t + f_neg)
        tp, fp, fn = tp + t, fp + f_pos, fn + f_neg
    p, r = total_p / CHRF_ORDER, total_r / CHRF_ORDER
    return DeltaChrF(_f_beta(p, r, BETA), p, r, tp, fp, fn)


# ---------------------------------------------------------------- delta chrF, commit 8bf0582


def _without_whitespace(text: str) -> str:
    return "".join(c for c in text if c not in WHITESPACE)


def delta_chr_f_8bf0582(original: str, expected: str, actual: str) -> float:
    """Zed's delta chrF as of commit 8bf0582, on 0–1: whitespace removed, n-grams of the whole
    texts, per-order precision and recall averaged (1 and 1 for an order where both deltas are
    empty), F-beta with β = 2; 1.0 when all three texts are equal."""
    if original == expected == actual:
        return 1.0
    texts = [_without_whitespace(t) for t in (original, expected, actual)]
    total_p = total_r = 0.0
    for n in range(1, CHRF_ORDER + 1):
        orig, exp, act = (ngram_counts(t, n) for t in texts)
        exp_counts, exp_empty = _delta_counts(exp, orig)
        act_counts, act_empty = _delta_counts(act, orig)
        if exp_empty and act_empty:
            total_p, total_r = total_p + 1.0, total_r + 1.0
            continue
        tp, fp, fn = _classify(exp_counts, act_counts)
        total_p, total_r = total_p + _ratio(tp, tp + fp), total_r + _ratio(tp, tp + fn)
    return _f_beta(total_p / CHRF_ORDER, total_r / CHRF_ORDER, BETA_8BF0582)


# ---------------------------------------------------------------- braces, whitespace


def braces_disbalance(text: str) -> int:
    """|#{ − #}| + |#( − #)| + |#[ − #]| (Zed's `braces_disbalance`)."""
    return sum(abs(text.count(a) - text.count(b)) for a, b in ("{}", "()", "[]"))


def added_brace_imbalance(original: str, prediction: str) -> int:
    """The imbalance the prediction adds: braces_disbalance(prediction) − braces_disbalance(original),
    floored at 0 (prediction_score.rs)."""
    return max(braces_disbalance(prediction) - braces_disbalance(original), 0)


def _blank(text: str) -> bool:
    """Empty or whitespace only (Rust's `trim().is_empty()`)."""
    return all(c in WHITESPACE for c in text)


def _isolated(changes: list[str], i: int) -> bool:
    """No substantive +/- line next to changes[i] before a context line on either side."""
    for side in (reversed(changes[:i]), changes[i + 1 :]):
        for line in side:
            if not line.startswith(("+", "-")):
                break
            if not _blank(line[1:]):
                return False
    return True


def has_isolated_whitespace_changes(patch: str) -> bool:
    """Zed's `has_isolated_whitespace_changes` (without a cursor) of a unified diff: an added or
    deleted blank (whitespace-only) line with no substantive +/- line beside it in its run of
    changed lines."""
    hunks: list[list[str]] = []
    started = False
    for line in patch.splitlines():
        if line.startswith(("--- ", "+++", "@@")):
            started = True
        if not started or line.startswith(("--- ", "+++")):
            continue
        if line.startswith("@@") or not hunks:
            hunks.append([])
        if not line.startswith("@@"):
            hunks[-1].append(line)
    return any(
        line.startswith(("+", "-")) and _blank(line[1:]) and _isolated(lines, i)
        for lines in hunks for i, line in enumerate(lines)
    )


def isolated_whitespace(original: str, prediction: str) -> bool:
    """`has_isolated_whitespace_changes` of the line diff original → prediction (difflib's unified
    diff, 3 context lines)."""
    diff = difflib.unified_diff(original.splitlines(), prediction.splitlines(), lineterm="")
    return has_isolated_whitespace_changes("\n".join(diff))
