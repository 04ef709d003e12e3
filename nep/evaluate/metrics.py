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

Zed's metrics (nep/evaluate/zed.py and kept_rate.py: the definitions, commits and Zed's unit
tests), on whole files, original = the current version, each 0 for an unusable prediction:
- delta_chrf: Zed's current `delta_chr_f` (crates/edit_prediction_metrics, patch_metrics.rs) on
  0–1: whitespace runs collapsed, character n-grams 1..6 of the changed regions, F-beta with
  β = 0.5 of the precision and recall averaged over the orders (`delta_chrf_precision`,
  `delta_chrf_recall`). `delta_chrf_8bf0582`: the definition of commit 8bf0582 (whitespace removed,
  whole texts, β = 2), nep's `delta_chrf` until 2026-12.
- kept_rate, kept_recall: Zed's `compute_kept_rate` (kept_recall is its `recall_rate`).
- brace_imbalance: the bracket imbalance the prediction adds to the current version (None when
  there is no usable prediction); isolated_whitespace: a blank line added or removed on its own.
- exact lines (`exact_lines`, commit 8bf0582's `line_match_score`): the *sets* of `+`/`-` lines of
  the line diff current → truth and
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

Public API, usable per example (e.g. as a reward): `paper_scores`, `delta_chrf` (and
`delta_chrf_scores`, `delta_chrf_8bf0582`), `exact_lines`, `edit_chrf`, `edit_similarity`,
`score_example`; nep.evaluate.kept_rate.kept_rate.
"""

from __future__ import annotations

import difflib
from dataclasses import asdict, dataclass

from rapidfuzz.distance import Levenshtein

from nep.config.schema import Evaluate, default
from nep.evaluate.kept_rate import kept_rate
from nep.evaluate.refined import refined_scores
from nep.evaluate.zed import (
    DeltaChrF,
    added_brace_imbalance,
    delta_chr_f,
    delta_chr_f_8bf0582,
    isolated_whitespace,
    ngram_counts,
)

PAPER_CONTEXT = 3  # context lines of the paper's hunks (difflib's default n)
CHRF_ORDER = 6
CHRF_BETA = 2.0

Hunk = tuple[str, ...]  # a hunk's lines as difflib writes them, "@@ ... @@" header first

# The refined position match's context when a caller gives none: evaluate.context_lines's default
# (the schema is its one home; posttrain's reward scores with it)
CONTEXT_LINES: int = default(Evaluate, "context_lines")


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


def chrf(hypothesis: str, reference: str, *, order: int = CHRF_ORDER, beta: float = CHRF_BETA) -> float:
    """Sentence chrF (Popović 2015) in [0, 1]: whitespace removed, character n-grams n = 1..order;
    precision and recall averaged over the orders both texts have n-grams of, then F-beta.
    Two empty texts score 1.0; one empty text scores 0.0."""
    hyp, ref = "".join(hypothesis.split()), "".join(reference.split())
    if not hyp or not ref:
        return float(hyp == ref)
    precisions, recalls = [], []
    for n in range(1, order + 1):
        h, r = ngram_counts(hyp, n), ngram_counts(ref, n)
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


def delta_chrf_scores(current: str, ground_truth: str, prediction: str) -> DeltaChrF:
    """Zed's current delta chrF (nep/evaluate/zed.py) of the prediction's edit of `current` against
    the ground truth's: the score on 0–1, its precision and recall, and the n-gram counts."""
    return delta_chr_f(current, ground_truth, prediction)


def delta_chrf(current: str, ground_truth: str, prediction: str) -> float:
    """Zed's current delta chrF (0–1) of the prediction's edit of `current` against the ground truth's."""
    return delta_chr_f(current, ground_truth, prediction).score


def delta_chrf_8bf0582(current: str, ground_truth: str, prediction: str) -> float:
    """Zed's delta chrF as of commit 8bf0582 (0–1), nep's `delta_chrf` until 2026-12."""
    return delta_chr_f_8bf0582(current, ground_truth, prediction)


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
    # Zed's (nep/evaluate/zed.py, kept_rate.py)
    delta_chrf: float  # the current definition, with its averaged precision and recall
    delta_chrf_precision: float
    delta_chrf_recall: float
    delta_chrf_8bf0582: float  # the definition of commit 8bf0582
    kept_rate: float  # share of the prediction's edit characters the true edit also makes
    kept_recall: float  # share of the true edit's characters the prediction makes (Zed's recall_rate)
    brace_imbalance: int | None  # bracket imbalance the prediction adds (None: no usable prediction)
    isolated_whitespace: bool | None  # a blank line added or removed on its own
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
    context_lines: int = CONTEXT_LINES,
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
    chrf_ = delta_chr_f(current, ground_truth, prediction) if usable else DeltaChrF(0.0, 0.0, 0.0)
    kept = kept_rate(current, prediction, ground_truth) if usable else None
    return ExampleScore(
        id=id,
        language=language,
        extracted=extracted,
        missing=missing,
        exact_match=bool(paper["exact_match"]),
        partial_match=paper["partial_match"],
        position_match=paper["position_match"],
        delta_chrf=chrf_.score,
        delta_chrf_precision=chrf_.precision,
        delta_chrf_recall=chrf_.recall,
        delta_chrf_8bf0582=delta_chr_f_8bf0582(current, ground_truth, prediction) if usable else 0.0,
        kept_rate=kept.kept_rate if kept else 0.0,
        kept_recall=kept.recall_rate if kept else 0.0,
        brace_imbalance=added_brace_imbalance(current, prediction) if usable else None,
        isolated_whitespace=isolated_whitespace(current, prediction) if usable else None,
        line_true_positives=lines[0],
        line_false_positives=lines[1],
        line_false_negatives=lines[2],
        edit_chrf=edit_chrf(current, ground_truth, prediction) if usable else 0.0,
        edit_similarity=edit_similarity(ground_truth, prediction) if usable else 0.0,
        **asdict(refined),
        judgment=judgment,
        output_tokens=output_tokens,
    )
