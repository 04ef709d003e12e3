"""Relevance labelers (`label.backend`) and the label stage's work: `label_file`.

A labeler gives each commit record a nep.llm.verdicts.Verdict: 1 when the record's edits are related
(so the last one is predictable from the others), 0 when not, None when an LLM gave no answer.

- `all`: every record is relevant.
- `heuristic`: relevant when the **last chunk shares an identifier with an earlier chunk**. The
  identifiers of a chunk are the names (`[A-Za-z_][A-Za-z0-9_]*`, at least 2 characters) on its
  removed and added lines, minus keywords and names common to the seven languages (`self`, `int`,
  `return`...). A commit that renames a variable, threads a new parameter through, or adds a
  field and then uses it shares names across chunks; unrelated touch-ups in one file usually do
  not. Records with fewer than two chunks are labeled 0.
- `openai`: a chat model says whether the last edit is related to the earlier ones (nep.data.relevance).
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from nep.core.edits import Chunk, compute_chunks
from nep.core.records import valid_records
from nep.llm.verdicts import Report, Tally, Verdict, VerdictBackend, build, record_id
from nep.util.jsonl import flat_counts, read_jsonl, write_jsonl
from nep.util.registry import Registry

LABELERS = Registry("label.backend", {
    "all": "nep.data.label:AllLabeler",
    "heuristic": "nep.data.label:HeuristicLabeler",
    "openai": "nep.data.relevance:LLMRelevance",
})

IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Keywords and ubiquitous names of Python, Java, Go, C, C++, JavaScript and TypeScript.
_COMMON = """
    and as assert async await break case catch char class const continue def default del delete do
    double elif else enum export extends false final finally float for from func function go goto if
    implements import in instanceof int interface is lambda let long map new nil none not null or
    package pass private protected public raise return self short static struct super switch this
    throw throws true try type typeof undefined unsigned var void while with yield bool string str
    len range print err error fmt std include define ifdef ifndef endif auto sizeof size_t
"""
COMMON_NAMES = frozenset(_COMMON.split())


def identifiers(chunk: Chunk) -> set[str]:
    """The distinctive names on a chunk's removed and added lines."""
    names: set[str] = set()
    for line in chunk.old_lines + chunk.new_lines:
        names.update(IDENTIFIER.findall(line))
    return {n for n in names if len(n) >= 2 and n.lower() not in COMMON_NAMES}


def label_all(record: dict[str, Any]) -> tuple[int, str]:
    return 1, "all: every record is taken as relevant"


def heuristic_verdict(record: dict[str, Any]) -> tuple[int, str, str]:
    """(label, reason, tag) of the heuristic labeler."""
    chunks = compute_chunks(record["old_contents"], record["new_contents"])
    if len(chunks) < 2:
        return 0, "heuristic: fewer than two chunks", "few_chunks"
    earlier: set[str] = set()
    for chunk in chunks[:-1]:
        earlier |= identifiers(chunk)
    shared = sorted(identifiers(chunks[-1]) & earlier)
    if shared:
        return 1, f"heuristic: last chunk shares {', '.join(shared[:5])} with earlier chunks", "shared_name"
    return 0, "heuristic: last chunk shares no identifier with earlier chunks", "no_shared_name"


def label_heuristic(record: dict[str, Any]) -> tuple[int, str]:
    return heuristic_verdict(record)[:2]


@dataclass
class AllLabeler(VerdictBackend):
    what: ClassVar[str] = "labels"

    def decide(self, records: list[dict[str, Any]]) -> Iterator[Verdict]:
        for i, record in enumerate(records):
            yield Verdict(record_id(record, i), *label_all(record), "all")


@dataclass
class HeuristicLabeler(VerdictBackend):
    what: ClassVar[str] = "labels"

    def decide(self, records: list[dict[str, Any]]) -> Iterator[Verdict]:
        for i, record in enumerate(records):
            yield Verdict(record_id(record, i), *heuristic_verdict(record))


def label_file(input_path: Path, output_path: Path, cfg: Any) -> Report:
    """Label the commit records of `input_path` with the labeler `cfg.backend` (the `label:` params); write them,
    in input order, with `label` (1/0/None) and `label_reason`. The caller writes the report's
    metrics and timing, then calls `report.check()` (the labeler's max_failure_rate)."""
    from tqdm import tqdm

    from nep.util.console import bars

    start = time.perf_counter()
    drops: Counter = Counter()
    records = list(valid_records(read_jsonl(input_path, drops), drops))
    labeler = build(LABELERS, cfg)
    tally = Tally()
    verdicts = tqdm(labeler.verdicts(records), total=len(records), desc="label", unit="rec", disable=bars())
    n = write_jsonl(output_path, ({**record, "label": v.value, "label_reason": v.reason}
                                  for record, v in zip(records, map(tally.add, verdicts), strict=True)))
    metrics = {"records_in": len(records) + sum(drops.values()), "records_out": n, **tally.metrics(),
               **flat_counts("dropped", drops), **labeler.metrics()}
    timing = {"wall_time_s": round(time.perf_counter() - start, 3), **labeler.timing()}
    return Report(metrics, timing, labeler)
