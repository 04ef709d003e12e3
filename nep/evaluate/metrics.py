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
- delta_chrf: chrF (character n-grams 1..6, beta 2) of the prediction's edit text against the
  ground truth's, where a text's edit text is its changed lines against the current version
  (see `edit_text`).
- edit_similarity: 1 - Levenshtein distance / length of the longer text, prediction vs ground truth.

Where the paper's script raises (the ground truth has no hunk: it equals the current version up to
blank lines and line ends), partial and position match are undefined (None): the evaluation leaves
the example out of those two rates and counts it (`no_true_hunk`). A prediction without a hunk
scores 0 on both. nep's chunk-based variants live in nep/evaluate/refined.py.

Public API, usable per example (e.g. as a reward): `paper_scores`, `delta_chrf`,
`edit_similarity`, `score_example`.
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


def delta_chrf(current: str, ground_truth: str, prediction: str) -> float:
    """chrF of the prediction's edit text against the ground truth's (both against `current`)."""
    return chrf(edit_text(current, prediction), edit_text(current, ground_truth))


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
    # new
    delta_chrf: float
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
    return ExampleScore(
        id=id,
        language=language,
        extracted=extracted,
        missing=missing,
        exact_match=bool(paper["exact_match"]),
        partial_match=paper["partial_match"],
        position_match=paper["position_match"],
        delta_chrf=delta_chrf(current, ground_truth, prediction) if usable else 0.0,
        edit_similarity=edit_similarity(ground_truth, prediction) if usable else 0.0,
        **asdict(refined),
        judgment=judgment,
        output_tokens=output_tokens,
    )
