"""The `lookup` baseline: memorised one-line edits from the training split.

It reads the training examples (`train`, default data/split/train.jsonl) and collects every
single-line replacement their next edits made: one line of the current version replaced by one
line of the next (difflib's `replace` of one line by one line), keyed by the old line with its
whitespace normalised (runs of whitespace as one space, ends stripped; blank lines never key). For
a test example it looks up every line of the current version, takes the replacement seen most
often in training (ties: the earlier line of the current version, then the smaller replacement
text), and applies it at that one line, re-indented to the line's own indentation. When no line
matches (or the only replacements would leave the line as it is), the answer is the current
version unchanged. Each answer is tagged `lookup: hit|miss` (metrics `lookup.hit`, `lookup.miss`).

It answers what a model that only memorised training edits would: a fine-tuned model that beats
`identity` but not `lookup` has learnt little beyond the training edits themselves.
"""

from __future__ import annotations

import difflib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from nep.core.extract import Style
from nep.core.prompts import parse_prompt
from nep.predictors.base import Prediction
from nep.predictors.baselines import OneByOne
from nep.util.errors import NepError
from nep.util.jsonl import read_jsonl


def normalise(line: str) -> str:
    """A line's key: its whitespace runs as one space, no leading or trailing whitespace."""
    return " ".join(line.split())


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip())]


def relative(old: str, new: str) -> str:
    """The new line without the old line's indentation (what is re-indented where it is applied);
    a new line that does not start with that indentation loses its own."""
    indent = _indent(old)
    return new[len(indent):] if new.startswith(indent) else new.lstrip()


def one_line_replacements(current: str, nxt: str) -> list[tuple[str, str]]:
    """(old line, new line) for every single line that `nxt` replaces by a single line."""
    a, b = current.splitlines(), nxt.splitlines()
    ops = difflib.SequenceMatcher(None, a, b, autojunk=False).get_opcodes()
    return [(a[i1], b[j1]) for tag, i1, i2, j1, j2 in ops if tag == "replace" and i2 - i1 == 1 and j2 - j1 == 1]


def build_table(examples: list[dict[str, Any]]) -> dict[str, Counter]:
    """Normalised old line → Counter of its replacements (relative to the old line's indentation)."""
    table: dict[str, Counter] = {}
    for e in examples:
        for old, new in one_line_replacements(e["current"], e["next"]):
            if key := normalise(old):
                table.setdefault(key, Counter())[relative(old, new)] += 1
    return table


def apply_lookup(table: dict[str, Counter], current: str) -> str | None:
    """The current version with its best-supported memorised replacement applied, or None when no
    line of it has one that changes it."""
    lines = current.splitlines(keepends=True)
    best: tuple[int, int, str] | None = None  # (-count, line index, replacement): the smallest wins
    for i, line in enumerate(lines):
        body = line.rstrip("\r\n")
        for rel, count in table.get(normalise(body), {}).items():
            if _indent(body) + rel != body and (best is None or (-count, i, rel) < best):
                best = (-count, i, rel)
    if best is None:
        return None
    _, i, rel = best
    body = lines[i].rstrip("\r\n")
    lines[i] = _indent(body) + rel + lines[i][len(body):]
    return "".join(lines)


@dataclass
class LookupPredictor(OneByOne):
    """The most frequent training one-line replacement of a line the current version holds."""

    kind: ClassVar[str] = "lookup"
    style: ClassVar[Style] = "direct"

    train: str = "data/split/train.jsonl"  # the training examples (set `needs` to it too)
    table: dict[str, Counter] | None = field(default=None, init=False, repr=False)
    counts: Counter = field(default_factory=Counter, init=False, repr=False)

    def load(self) -> dict[str, Counter]:
        """The replacement table from `train` (once); records without a string `current` and `next`
        are counted (`lookup.train_skipped`), never used."""
        if self.table is None:
            if not Path(self.train).is_file():
                raise NepError(f"{self.param('train')}: {self.train}: file not found (the training split: "
                               "run `dvc repro split`, or name another file)")
            drops: Counter = Counter()
            usable = []
            try:
                for e in read_jsonl(self.train, drops):
                    if isinstance(e.get("current"), str) and isinstance(e.get("next"), str):
                        usable.append(e)
                    else:
                        drops["no_versions"] += 1
            except (NepError, UnicodeDecodeError) as e:
                raise NepError(f"{self.param('train')}: {e}") from e
            self.table = build_table(usable)
            self.counts.update({"train_examples": len(usable), "train_skipped": sum(drops.values()),
                                "replacements": sum(len(c) for c in self.table.values())})
        return self.table

    def predict(self, examples, todo, settings):
        self.load()
        yield from super().predict(examples, todo, settings)

    def predict_one(self, example):
        current = parse_prompt(example["prompt"])["current"]
        answer = apply_lookup(self.load(), current)
        return Prediction(current if answer is None else answer, tags={"lookup": "miss" if answer is None else "hit"})

    def report(self):
        self.load()  # the same counts when every answer was resumed from the checkpoint
        return {f"lookup.{k}": int(v) for k, v in sorted(self.counts.items())}
