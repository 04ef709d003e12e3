"""Scoring one next-edit prediction: the paper's metrics, exactly, and edit-level similarity.

The paper's edits are the *hunks* of a line-level unified diff of the current version against a
text: `difflib.unified_diff` over `text.splitlines()` (line ends dropped, `lineterm=""`), 3 lines
of context, so changes less than 7 lines apart share one hunk; a hunk whose `+`/`-` lines are all
empty or whitespace is dropped. A hunk is kept whole: its `@@ -a,b +c,d @@` header line, then its
context (` `), removed (`-`) and added (`+`) lines.

- exact_match: prediction == ground truth, as strings (a differing final newline is a miss).
- partial_match: the ground truth's first hunk, header line included, is one of the prediction's.
- position_match: the context lines of the ground truth's first hunk equal those of one of the
  prediction's hunks.
- edit_similarity: 1 - Levenshtein distance / length of the longer text, prediction vs ground truth.

Zed's metrics (zed-industries/zed, crates/edit_prediction_cli/src/metrics.rs at commit 8bf0582,
the definition Zeta's numbers are reported in), on whole files, original = the current version:
- delta_chrf: Zed's `delta_chr_f` on 0–1 (Zed reports 0–100): whitespace removed; for n = 1..6 the
  character n-gram counts of current, truth and prediction; the deltas truth − current and
  prediction − current over every n-gram of either side; a negative delta of n-gram g counts as
  |d| occurrences of a distinct token "deleted g"; true positives Σ min, false positives and
  negatives the excesses; per-order precision and recall (0 when undefined, 1 and 1 when both
  deltas are empty), averaged over the 6 orders, then F-beta with beta 2; 1.0 when all three texts
  are equal. See `zed_delta_chrf`.
- exact lines (`exact_lines`): the *sets* of `+`/`-` lines of the line diff current → truth and
  current → prediction; true positives = their intersection, false positives / negatives the two
  differences (Zed's `line_match_score`). The evaluation sums the counts over examples (Zed's
  `ClassificationMetrics::aggregate`) for precision, recall and F1.

nep's own:
- edit_chrf: sentence chrF (n-grams 1..6, beta 2) of the prediction's edit text against the ground
  truth's, a text's edit text being its changed lines against the current version (`edit_text`).
  It was reported as `delta_chrf` before nep followed Zed's definition; it gives recall credit for
  deleting lines, so it can reward an answer that does not attempt the edit.

Where the paper's script raises (the ground truth has no hunk: it equals the current version up to
blank lines and line ends), partial and position match are undefined (None): the evaluation leaves
the example out of those two rates and counts it (`no_true_hunk`). A prediction without a hunk
scores 0 on both. nep's chunk-based variants live in nep/evaluate/refined.py.

Public API, usable per example (e.g. as a reward): `paper_scores`, `delta_chrf`, `exact_lines`,
`edit_chrf`, `edit_similarity`, `score_example`.
"""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import asdict, dataclass

from rapidfuzz.distance import Levenshtein

from nep.evaluate.refined import refined_scores

PAPER_CONTEXT = 3  # context lines of the paper's hunks (difflib's default n)
CHRF_ORDER = 6
CHRF_BETA = 2.0

Hunk = tuple[str, ...]  # a hunk's lines as difflib writes them, "@@ ... @@" header first


def _blank_change(hunk: Hunk) -> bool:
    """True when every +/- line of the hunk is empty or whitespace."""
    return all(not line[1:].strip() for line in hunk if line.startswith(("+", "-")))


def hunks(current: str, text: str) -> list[Hunk]:
    """The paper's edits of current → text: unified-diff hunks, blank-only ones dropped."""
    diff = difflib.unified_diff(
        current.splitlines(), text.splitlines(), lineterm="", n=PAPER_CONTEXT
    )
    found: list[list[str]] = []
    for line in diff:
        if line.startswith("@@"):
            found.append([line])
        elif found:  # lines before the first "@@" are the ---/+++ file header
            found[-1].append(line)
    return [h for h in map(tuple, found) if not _blank_change(h)]


def hunk_context(hunk: Hunk) -> tuple[str, ...]:
    """The hunk's unchanged (context) lines, in order."""
    return tuple(line for line in hunk if line.startswith(" "))


def paper_scores(current: str, ground_truth: str, prediction: str) -> dict[str, bool | None]:
    """The paper's exact, partial and position match of one prediction (None = undefined)."""
    true_hunks = hunks(current, ground_truth)
    partial = position = None
    if true_hunks:
        pred_hunks = hunks(current, prediction)
        first = true_hunks[0]
        partial = first in pred_hunks
        position = hunk_context(first) in {hunk_context(h) for h in pred_hunks}
    return {"exact_match": prediction == ground_truth, "partial_match": partial, "position_match": position}


def edit_text(current: str, text: str) -> str:
    """The change current → text as text: each removed line as "-line", each added line as
    "+line", in diff order, joined by newlines ("" when the line lists are equal)."""
    a, b = current.splitlines(), text.splitlines()
    out: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b).get_opcodes():
        if tag != "equal":
            out.extend("-" + line for line in a[i1:i2])
            out.extend("+" + line for line in b[j1:j2])
    return "\n".join(out)


def _ngrams(text: str, n: int) -> Counter[str]:
    return Counter(text[i : i + n] for i in range(len(text) - n + 1))


def chrf(hypothesis: str, reference: str, *, order: int = CHRF_ORDER, beta: float = CHRF_BETA) -> float:
    """Sentence chrF (Popović 2015) in [0, 1]: whitespace removed, character n-grams n = 1..order;
    precision and recall averaged over the orders both texts have n-grams of, then F-beta.
    Two empty texts score 1.0; one empty text scores 0.0."""
    hyp, ref = "".join(hypothesis.split()), "".join(reference.split())
    if not hyp or not ref:
        return float(hyp == ref)
    precisions, recalls = [], []
    for n in range(1, order + 1):
        h, r = _ngrams(hyp, n), _ngrams(ref, n)
        if not h or not r:
            continue
        matched = sum((h & r).values())
        precisions.append(matched / h.total())
        recalls.append(matched / r.total())
    p, r = sum(precisions) / len(precisions), sum(recalls) / len(recalls)
    if p + r == 0:
        return 0.0
    b2 = beta * beta
    return (1 + b2) * p * r / (b2 * p + r)


def edit_chrf(current: str, ground_truth: str, prediction: str) -> float:
    """nep's chrF of the prediction's edit text against the ground truth's (both against `current`)."""
    return chrf(edit_text(current, prediction), edit_text(current, ground_truth))


# Rust's `char::is_whitespace` (the Unicode White_Space property), which Zed's filter uses; Python's
# str.isspace also counts U+001C..U+001F, so the set is spelled out.
_UNICODE_WHITESPACE = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
    "\u2028\u2029\u202f\u205f\u3000"
)
DELETED = "\N{NOT SIGN}"  # Zed's prefix of a "deleted n-gram" token


def _without_whitespace(text: str) -> str:
    return "".join(c for c in text if c not in _UNICODE_WHITESPACE)


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


def _precision_recall(expected: Counter[str], actual: Counter[str]) -> tuple[float, float]:
    tp = sum(min(n, actual[g]) for g, n in expected.items())
    fp = sum(max(n - expected[g], 0) for g, n in actual.items())
    fn = sum(max(n - actual[g], 0) for g, n in expected.items())
    return (tp / (tp + fp) if tp + fp else 0.0), (tp / (tp + fn) if tp + fn else 0.0)


def zed_delta_chrf(original: str, expected: str, actual: str) -> float:
    """Zed's delta-chrF of the edit original → actual against original → expected, on 0–1 (the
    module docstring has the definition; Zed's value is 100 times this)."""
    if original == expected == actual:
        return 1.0
    texts = [_without_whitespace(t) for t in (original, expected, actual)]
    total_p = total_r = 0.0
    for n in range(1, CHRF_ORDER + 1):
        orig, exp, act = (_ngrams(t, n) for t in texts)
        exp_counts, exp_empty = _delta_counts(exp, orig)
        act_counts, act_empty = _delta_counts(act, orig)
        if exp_empty and act_empty:
            total_p, total_r = total_p + 1.0, total_r + 1.0
            continue
        p, r = _precision_recall(exp_counts, act_counts)
        total_p, total_r = total_p + p, total_r + r
    p, r = total_p / CHRF_ORDER, total_r / CHRF_ORDER
    if p + r == 0:
        return 0.0
    b2 = CHRF_BETA * CHRF_BETA
    return (1 + b2) * p * r / (b2 * p + r)


def delta_chrf(current: str, ground_truth: str, prediction: str) -> float:
    """Zed's delta-chrF (0–1) of the prediction's edit of `current` against the ground truth's."""
    return zed_delta_chrf(current, ground_truth, prediction)


def changed_lines(current: str, text: str) -> set[str]:
    """The set of `-line` and `+line` lines of the line diff current → text (lines without their
    endings, as a unified diff shows them)."""
    a, b = current.splitlines(), text.splitlines()
    out: set[str] = set()
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            out.update("-" + line for line in a[i1:i2])
            out.update("+" + line for line in b[j1:j2])
    return out


def exact_lines(current: str, ground_truth: str, prediction: str) -> tuple[int, int, int]:
    """Zed's exact-line counts (true positives, false positives, false negatives): the prediction's
    set of changed lines against the ground truth's, both diffed against `current`."""
    expected, actual = changed_lines(current, ground_truth), changed_lines(current, prediction)
    return len(expected & actual), len(actual - expected), len(expected - actual)


def edit_similarity(ground_truth: str, prediction: str) -> float:
    """1 - Levenshtein(prediction, ground truth) / max(len); 1.0 for two empty texts."""
    return float(Levenshtein.normalized_similarity(prediction, ground_truth))


@dataclass(frozen=True)
class ExampleScore:
    """Every per-example score of one prediction. None = undefined for this example."""

    id: str
    language: str
    extracted: bool
    missing: bool  # no prediction for this example (file predictor); scored 0
    # the paper's
    exact_match: bool
    partial_match: bool | None
    position_match: bool | None
    # Zed's
    delta_chrf: float
    line_true_positives: int  # Zed's exact lines (`exact_lines`)
    line_false_positives: int
    line_false_negatives: int
    # nep's
    edit_chrf: float
    edit_similarity: float
    # nep's refined variants (nep/evaluate/refined.py)
    exact_match_eol: bool
    exact_match_ws: bool
    partial_match_chunk: bool | None
    position_match_chunk: bool | None
    location_match: bool | None
    reversal: bool | None
    true_chunks: int
    predicted_chunks: int
    matched_chunks: int
    judgment: int | None  # 1/0, None when not judged
    output_tokens: int | None = None


def score_example(
    *,
    original: str,
    current: str,
    ground_truth: str,
    prediction: str,
    extracted: bool = True,
    missing: bool = False,
    judgment: int | None = None,
    language: str = "",
    id: str = "",
    context_lines: int = 3,
    output_tokens: int | None = None,
) -> ExampleScore:
    """Score one prediction of the next version. An unextracted or missing prediction scores 0
    on every metric (partial/position stay undefined when the ground truth has no hunk)."""
    usable = extracted and not missing
    paper = paper_scores(current, ground_truth, prediction if usable else current)
    if not usable:
        paper = {k: (None if v is None else False) for k, v in paper.items()}
    refined = refined_scores(
        original=original,
        current=current,
        ground_truth=ground_truth,
        prediction=prediction if usable else None,
        context_lines=context_lines,
    )
    lines = exact_lines(current, ground_truth, prediction) if usable else (0, 0, len(changed_lines(current, ground_truth)))
    return ExampleScore(
        id=id,
        language=language,
        extracted=extracted,
        missing=missing,
        exact_match=bool(paper["exact_match"]),
        partial_match=paper["partial_match"],
        position_match=paper["position_match"],
        delta_chrf=delta_chrf(current, ground_truth, prediction) if usable else 0.0,
        line_true_positives=lines[0],
        line_false_positives=lines[1],
        line_false_negatives=lines[2],
        edit_chrf=edit_chrf(current, ground_truth, prediction) if usable else 0.0,
        edit_similarity=edit_similarity(ground_truth, prediction) if usable else 0.0,
        **asdict(refined),
        judgment=judgment,
        output_tokens=output_tokens,
    )
