"""Leakage between the two sides of a split: test examples that training already shows.

Three kinds, each counted over the test examples (an example can count in several):

- `next_version`: the example's next version (its ground truth) is, byte for byte, the next
  version of a training example;
- `edit`: its edit, the changed lines of current → next (`edit_lines`: each removed line as
  "-text", each added line as "+text", whitespace runs collapsed and ends stripped, blank lines
  left out), equals a training example's; an example whose edit only touches whitespace has none;
- `window`: its window (the current version the prompt shows) is a near-copy of a training
  example's: the Jaccard similarity of their sets of token n-grams (`split.leakage.ngram` tokens,
  tokens being words and single punctuation characters) is at least `split.leakage.window_similarity`.
  Candidate pairs come from MinHash signatures (64 seeded hashes cut into bands, `bands_for`: the
  widest bands with which a pair at the threshold becomes a candidate with probability at least
  0.999; at 0.8, 16 bands of 4 rows: 0.9998), and each candidate's similarity is computed exactly.

The check sees only the split's two files; it cannot see what the base model saw in pre-training
(docs/data.md). Same inputs give the same counts and examples (seeded hashes, input order).
"""

from __future__ import annotations

import difflib
import hashlib
import re
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from nep.util.errors import NepError

KINDS = ("next_version", "edit", "window")
WHAT = {"next_version": "a next version", "edit": "an edit", "window": "a near-copy window"}
TOKEN = re.compile(r"\w+|[^\w\s]")
HASHES = 64
RECALL = 0.999  # the least chance that a pair at the threshold is compared


def edit_lines(current: str, next_version: str) -> tuple[str, ...]:
    """The changed lines of current → next, whitespace-normalised, in diff order ("-old", "+new")."""
    a, b = current.splitlines(), next_version.splitlines()
    out: list[str] = []
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes():
        if tag != "equal":
            out.extend("-" + " ".join(line.split()) for line in a[i1:i2] if line.strip())
            out.extend("+" + " ".join(line.split()) for line in b[j1:j2] if line.strip())
    return tuple(out)


def shingles(text: str, n: int) -> np.ndarray:
    """The sorted, distinct 64-bit hashes of the text's token n-grams (the whole text when it has
    fewer than n tokens; none when it has no token)."""
    tokens = TOKEN.findall(text)
    grams = {" ".join(tokens[i : i + n]) for i in range(max(len(tokens) - n + 1, 1))} if tokens else set()
    hashes = [int.from_bytes(hashlib.blake2b(g.encode(), digest_size=8).digest(), "little") for g in grams]
    return np.unique(np.array(hashes, dtype=np.uint64))


def _minhash(values: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """HASHES seeded multiply-shift hashes of each value, minimum per hash."""
    with np.errstate(over="ignore"):
        return ((np.outer(a, values) + b[:, None]) >> np.uint64(16)).min(axis=1)


def jaccard(x: np.ndarray, y: np.ndarray) -> float:
    """|x ∩ y| / |x ∪ y| of two sorted arrays of distinct hashes."""
    common = len(np.intersect1d(x, y, assume_unique=True))
    return common / (len(x) + len(y) - common) if len(x) + len(y) else 0.0


@dataclass
class Leakage:
    """Per kind, the test examples that leak, each as (test id, a training id it matches, the
    window similarity or None)."""

    test: int
    found: dict[str, list[tuple[str, str, float | None]]] = field(default_factory=dict)
    unchecked: int = 0  # test examples without the texts to compare

    def count(self, kind: str) -> int:
        return len(self.found.get(kind, []))

    def metrics(self) -> dict[str, Any]:
        """metrics/split.json's keys: `leakage.<kind>` (test examples) and `leakage.<kind>_rate`."""
        out: dict[str, Any] = {}
        for kind in KINDS:
            out[f"leakage.{kind}"] = self.count(kind)
            out[f"leakage.{kind}_rate"] = round(self.count(kind) / self.test, 4) if self.test else 0.0
        leaked = {t for kind in KINDS for t, _, _ in self.found.get(kind, [])}
        out["leakage.any"] = len(leaked)
        if self.unchecked:
            out["leakage.unchecked"] = self.unchecked
        return out

    def log_lines(self, shown: int) -> list[str]:
        """A line per kind with its count, then up to `shown` examples of it."""
        lines = []
        for kind in KINDS:
            rows = self.found.get(kind, [])
            lines.append(f"leakage {kind}: {len(rows)} of {self.test} test examples have {WHAT[kind]} "
                         "that training also has")
            for test_id, train_id, similarity in rows[:shown]:
                extra = "" if similarity is None else f" (similarity {similarity:.3f})"
                lines.append(f"  test {test_id} ~ train {train_id}{extra}")
        return lines


def bands_for(threshold: float) -> int:
    """Rows per band: the most (fewest candidates) that still compare a pair at the threshold with
    probability RECALL."""
    for rows in (8, 4, 2):
        if 1 - (1 - threshold**rows) ** (HASHES // rows) >= RECALL:
            return rows
    return 1


def _window_leaks(train: list[dict[str, Any]], test: list[dict[str, Any]], *, n: int, threshold: float,
                  seed: int) -> list[tuple[str, str, float | None]]:
    rng = np.random.default_rng(seed)
    a = rng.integers(1, 2**63, HASHES, dtype=np.uint64) | np.uint64(1)  # odd multipliers
    b = rng.integers(0, 2**63, HASHES, dtype=np.uint64)
    rows = bands_for(threshold)

    def keys(signature: np.ndarray) -> list[tuple[int, bytes]]:
        return [(k, signature[k : k + rows].tobytes()) for k in range(0, HASHES, rows)]

    train_sets = [shingles(e["current"], n) for e in train]
    buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)
    for i, s in enumerate(train_sets):
        if len(s):
            for key in keys(_minhash(s, a, b)):
                buckets[key].append(i)
    found = []
    for e in test:
        s = shingles(e["current"], n)
        if not len(s):
            continue
        candidates = sorted({i for key in keys(_minhash(s, a, b)) for i in buckets.get(key, ())})
        for i in candidates:
            similarity = jaccard(s, train_sets[i])
            if similarity >= threshold:
                found.append((e["id"], train[i]["id"], round(similarity, 4)))
                break
    return found


def _checkable(e: dict[str, Any]) -> bool:
    return isinstance(e.get("current"), str) and isinstance(e.get("next"), str)


def find_leakage(train: list[dict[str, Any]], test: list[dict[str, Any]], *, ngram: int = 5,
                 window_similarity: float = 0.8, seed: int = 0) -> Leakage:
    """Count the test examples whose next version, edit or window training also has (examples
    without a current and a next version are not checked: `Leakage.unchecked`)."""
    unchecked = sum(not _checkable(e) for e in test)
    train, test = [e for e in train if _checkable(e)], [e for e in test if _checkable(e)]
    next_versions: dict[str, str] = {}
    edits: dict[tuple[str, ...], str] = {}
    for e in train:
        next_versions.setdefault(e["next"], e["id"])
        if edit := edit_lines(e["current"], e["next"]):
            edits.setdefault(edit, e["id"])
    found: dict[str, list[tuple[str, str, float | None]]] = {kind: [] for kind in KINDS}
    for e in test:
        if e["next"] in next_versions:
            found["next_version"].append((e["id"], next_versions[e["next"]], None))
        edit = edit_lines(e["current"], e["next"])
        if edit and edit in edits:
            found["edit"].append((e["id"], edits[edit], None))
    found["window"] = _window_leaks(train, test, n=ngram, threshold=window_similarity, seed=seed)
    return Leakage(len(test) + unchecked, found, unchecked)


def check_limits(leakage: Leakage, max_rate: dict[str, float]) -> None:
    """A NepError naming `split.leakage.max_rate.<kind>` when a kind's share of the test set is
    above its limit."""
    for kind in KINDS:
        rate = leakage.count(kind) / leakage.test if leakage.test else 0.0
        if rate > max_rate[kind]:
            raise NepError(
                f"split.leakage.max_rate.{kind} is {max_rate[kind]}: {leakage.count(kind)} of {leakage.test} "
                f"test examples ({rate:.1%}) have {WHAT[kind]} that training also has "
                "(examples in the log above; raise the limit, or split by repository or time)"
            )
