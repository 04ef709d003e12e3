"""Zed's kept rate (kept_rate.rs, with tokenize.rs's tokens; commits in nep.evaluate.zed.ZED_COMMITS).

The kept rate of a prediction is the share of its *edit characters* that the reference edit also
makes. Edit characters are those the prediction introduces plus those of the base it deletes,
found at the level of tokens: the texts are tokenized (identifiers split at `_` runs and case
changes, runs of whitespace and of newlines, multi-character operators), runs of identifier tokens
rejoined into one unit, and each text aligned with the base by a longest common subsequence (LCS) of
units. Units of the prediction outside its LCS with the base are new; those that also survive an
LCS with the reference's new units are kept. Base units outside both LCSs are correctly deleted.

    kept_rate   = (kept + correctly deleted) / (prediction's new + its deleted)
    recall_rate = (kept + correctly deleted) / (reference's new + its deleted)

Both are 1 when neither edits, 0 when only the other one does. When the two edits' length changes
differ by more than 512 bytes the prediction scores 0 at once (Zed's "dirty final" bail-out).
Character counts are UTF-8 bytes, as in Zed.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import NamedTuple

import numpy as np

from nep.core.edits import common_affixes
from nep.evaluate.zed import WHITESPACE

MAX_DIRTY_LENGTH_DELTA = 512
# tokenize.rs's operators, longest first where one is a prefix of another (the first match wins)
MULTI_CHAR_PUNCTUATION = (
    ">>>=", "<<=", ">>=", "...", "..=", "??=", "**=", ">>>", "::", "->", "=>", "==", "!=", "<=",
    ">=", "&&", "||", "<<", ">>", "..", "+=", "-=", "*=", "/=", "%=", "&=", "|=", "^=", "++", "--",
    "**", "??", "?.", ":=", "<-", "//", "/*", "*/",
)
CONTEXT, KEPT, DISCARDED = "context", "kept", "discarded"
_SPACE = "".join(sorted(WHITESPACE - {"\n", "\r"}))
# tokenize.rs's character classes as one pattern, tried in this order at each position: a run of
# newlines, a run of other whitespace (Rust's set), a run of identifier characters (alphanumeric or
# `_`: Python's \w), an operator (the first of the list that matches), any other character.
_TOKEN = re.compile(
    "(?P<newline>[\n\r]+)|(?P<space>[" + re.escape(_SPACE) + "]+)|(?P<identifier>\\w+)|"
    + "|".join(map(re.escape, MULTI_CHAR_PUNCTUATION)) + "|.",
    re.DOTALL,
)


def _boundary(previous: str, current: str, following: str | None) -> bool:
    """A case change that starts a new word: aB, 2B, or the B of ABc."""
    if not current.isupper():
        return False
    return previous.islower() or previous.isnumeric() or (
        previous.isupper() and following is not None and following.islower())


@lru_cache(maxsize=65536)
def _identifier_tokens(identifier: str) -> tuple[str, ...]:
    """An identifier split into words, each run of underscores a token of its own."""
    if "_" not in identifier and (identifier.islower() or not any(c.isupper() for c in identifier)):
        return (identifier,)  # no underscore, no case change: one word
    out: list[str] = []
    start = i = 0
    while i < len(identifier):
        if identifier[i] == "_":
            if start < i:
                out.append(identifier[start:i])
            end = i
            while end < len(identifier) and identifier[end] == "_":
                end += 1
            out.append(identifier[i:end])
            start = i = end
            continue
        following = identifier[i + 1] if i + 1 < len(identifier) else None
        if i > start and _boundary(identifier[i - 1], identifier[i], following):
            out.append(identifier[start:i])
            start = i
        i += 1
    if start < len(identifier):
        out.append(identifier[start:])
    return tuple(out)


def _runs(text: str) -> list[tuple[str, bool]]:
    """The text's runs: (identifier run or other token, whether it is an identifier run)."""
    return [(m[0], m.lastgroup == "identifier") for m in _TOKEN.finditer(text)]


def tokenize(text: str) -> list[str]:
    """Zed's tokens: identifier words, whitespace runs, newline runs, operators, other characters."""
    tokens: list[str] = []
    for run, identifier in _runs(text):
        if identifier:
            tokens.extend(_identifier_tokens(run))
        else:
            tokens.append(run)
    return tokens


def _size(text: str) -> int:
    return len(text.encode("utf-8"))


def _lcs_masks(a: list[str], b: list[str], *, want_b: bool = True) -> tuple[list[bool], list[bool]]:
    """Which items of `a` and of `b` one longest common subsequence keeps, with Zed's tie-breaks
    (common prefix and suffix first; backtracking prefers dropping from `a` for a's mask and from
    `b` for b's)."""
    keep_a, keep_b = [False] * len(a), [False] * len(b)
    if not a or not b:
        return keep_a, keep_b
    if a == b:
        return [True] * len(a), [True] * len(b)
    prefix, suffix = common_affixes(a, b)
    for k in range(prefix):
        keep_a[k] = keep_b[k] = True
    for k in range(1, suffix + 1):
        keep_a[-k] = keep_b[-k] = True
    mid_a, mid_b = a[prefix : len(a) - suffix], b[prefix : len(b) - suffix]
    if not mid_a or not mid_b:
        return keep_a, keep_b
    ids: dict[str, int] = {}
    ia = np.array([ids.setdefault(t, len(ids)) for t in mid_a])
    ib = np.array([ids.setdefault(t, len(ids)) for t in mid_b])
    small = min(len(mid_a), len(mid_b)) < np.iinfo(np.uint16).max  # an LCS length fits 16 bits: half the memory
    dp = np.zeros((len(mid_a) + 1, len(mid_b) + 1), dtype=np.uint16 if small else np.int32)
    for i in range(1, len(mid_a) + 1):  # row i: the running maximum of (up, diagonal + 1 on a match)
        row = np.maximum(dp[i - 1, 1:], np.where(ib == ia[i - 1], dp[i - 1, :-1] + 1, 0))
        np.maximum.accumulate(row, out=dp[i, 1:])
    for mask, offset_a in ((keep_a, True), (keep_b, False)) if want_b else ((keep_a, True),):
        i, j = len(mid_a), len(mid_b)
        while i > 0 and j > 0:
            if mid_a[i - 1] == mid_b[j - 1]:
                mask[prefix + (i if offset_a else j) - 1] = True
                i, j = i - 1, j - 1
            elif offset_a:
                i, j = (i - 1, j) if dp[i - 1, j] >= dp[i, j - 1] else (i, j - 1)
            else:
                i, j = (i, j - 1) if dp[i, j - 1] >= dp[i - 1, j] else (i - 1, j)
    return keep_a, keep_b


def _units(text: str, *, spans: bool = False) -> list[tuple[str, int, int]]:
    """Zed's comparison units: each run of identifier tokens joined back into one unit (an
    identifier run), every other token a unit of its own: (text, first token, end token); the
    token positions only with `spans` (else 0, 0)."""
    if not spans:
        return [(run, 0, 0) for run, _ in _runs(text)]
    units: list[tuple[str, int, int]] = []
    at = 0
    for run, identifier in _runs(text):
        n = len(_identifier_tokens(run)) if identifier else 1
        units.append((run, at, at + n))
        at += n
    return units


class KeptRate(NamedTuple):
    """Zed's `KeptRateResult` (character counts in UTF-8 bytes; `annotations`: per token of the
    candidate, context, kept or discarded)."""

    kept_rate: float
    recall_rate: float
    kept_chars: int = 0
    correctly_deleted_chars: int = 0
    discarded_chars: int = 0
    candidate_new_chars: int = 0
    candidate_deleted_chars: int = 0
    reference_new_chars: int = 0
    reference_deleted_chars: int = 0
    context_chars: int = 0
    annotations: tuple[str, ...] = ()


def kept_rate(base: str, candidate: str, reference: str) -> KeptRate:
    """Zed's `compute_kept_rate(base, candidate, reference)`: how much of the candidate's edit of
    `base` the reference edit keeps (the module docstring has the definition)."""
    if base == candidate == reference:
        tokens = tokenize(candidate)
        return KeptRate(1.0, 1.0, context_chars=sum(map(_size, tokens)), annotations=(CONTEXT,) * len(tokens))
    candidate_delta, reference_delta = abs(_size(candidate) - _size(base)), abs(_size(reference) - _size(base))
    if abs(candidate_delta - reference_delta) > MAX_DIRTY_LENGTH_DELTA:
        return KeptRate(0.0, 0.0, discarded_chars=candidate_delta, candidate_new_chars=candidate_delta,
                        reference_new_chars=reference_delta, annotations=(DISCARDED,) * len(tokenize(candidate)))
    cand, base_units, ref = _units(candidate, spans=True), _units(base), _units(reference)
    texts = [u[0] for u in base_units]
    cand_in_base, base_in_cand = _lcs_masks([u[0] for u in cand], texts)
    ref_in_base, base_in_ref = _lcs_masks([u[0] for u in ref], texts)
    new_cand = [u[0] for u, kept in zip(cand, cand_in_base, strict=True) if not kept]
    new_ref = [u[0] for u, kept in zip(ref, ref_in_base, strict=True) if not kept]
    keep, _ = _lcs_masks(new_cand, new_ref, want_b=False)

    kept_chars = sum(_size(t) for t, k in zip(new_cand, keep, strict=True) if k)
    candidate_new = sum(map(_size, new_cand))
    reference_new = sum(map(_size, new_ref))
    candidate_deleted = sum(_size(u[0]) for u, k in zip(base_units, base_in_cand, strict=True) if not k)
    reference_deleted = sum(_size(u[0]) for u, k in zip(base_units, base_in_ref, strict=True) if not k)
    correctly_deleted = sum(_size(u[0]) for u, c, r in zip(base_units, base_in_cand, base_in_ref, strict=True)
                            if not c and not r)
    matched = kept_chars + correctly_deleted
    candidate_edit, reference_edit = candidate_new + candidate_deleted, reference_new + reference_deleted
    rate = matched / candidate_edit if candidate_edit else float(reference_edit == 0)
    recall = matched / reference_edit if reference_edit else float(candidate_edit == 0)

    annotations = [CONTEXT] * (cand[-1][2] if cand else 0)
    new_index = 0
    for (_, start, end), in_base in zip(cand, cand_in_base, strict=True):
        if not in_base:
            label = KEPT if keep[new_index] else DISCARDED
            new_index += 1
            annotations[start:end] = [label] * (end - start)
    return KeptRate(
        rate, recall, kept_chars, correctly_deleted, candidate_new - kept_chars, candidate_new,
        candidate_deleted, reference_new, reference_deleted,
        sum(_size(u[0]) for u, k in zip(cand, cand_in_base, strict=True) if k), tuple(annotations),
    )
