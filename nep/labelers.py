"""Offline relevance labelers for the label stage.

A labeler maps a commit record to `(label, reason)`: label 1 when the record's edits are related
(so the last one is predictable from the others), 0 when not.

- `all`: every record is relevant.
- `heuristic`: relevant when the **last chunk shares an identifier with an earlier chunk**. The
  identifiers of a chunk are the names (`[A-Za-z_][A-Za-z0-9_]*`, at least 2 characters) on its
  removed and added lines, minus keywords and names common to the seven languages (`self`, `int`,
  `return`...). A commit that renames a variable, threads a new parameter through, or adds a
  field and then uses it shares names across chunks; unrelated touch-ups in one file usually do
  not. Records with fewer than two chunks are labeled 0.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from nep.edits import Chunk, compute_chunks

Labeler = Callable[[dict[str, Any]], tuple[int, str]]

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


def label_heuristic(record: dict[str, Any]) -> tuple[int, str]:
    chunks = compute_chunks(record["old_contents"], record["new_contents"])
    if len(chunks) < 2:
        return 0, "heuristic: fewer than two chunks"
    earlier: set[str] = set()
    for chunk in chunks[:-1]:
        earlier |= identifiers(chunk)
    shared = sorted(identifiers(chunks[-1]) & earlier)
    if shared:
        return 1, f"heuristic: last chunk shares {', '.join(shared[:5])} with earlier chunks"
    return 0, "heuristic: last chunk shares no identifier with earlier chunks"


LABELERS: dict[str, Labeler] = {"all": label_all, "heuristic": label_heuristic}


def get_labeler(name: str, **_unused: Any) -> Labeler:
    """The offline labeler `name` (other label params, meant for LLM backends, are ignored)."""
    if name not in LABELERS:
        raise ValueError(f"label.backend '{name}' is not an offline labeler; choose one of {sorted(LABELERS)} or openai")
    return LABELERS[name]
