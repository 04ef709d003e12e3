"""A serial reference of the paper's commit filters, written from the paper's definitions, for the
benchmarks only (nep's own implementation is nep.data.filter).

The paper (arXiv 2508.10074; its `data_processing.py`) filters each CommitPackFT record by:
- characters: `len(old + new) <= 32768`;
- tokens: `2 * len(enc.encode(old + new)) <= max_tokens` with gpt-4o-mini's encoding; `encode`
  refuses special-token text such as `<|endoftext|>`, and the paper drops such a record;
- the unified diff of `old.splitlines()` → `new.splitlines()` (difflib, `lineterm=''`, 3 context
  lines): a *chunk* is a run of `+`/`-` lines after the two header lines; at least two chunks (a diff
  with one chunk fails, one with none has no hunk and fails the window check);
- every chunk has at most `max_chunk_lines` `+`/`-` lines;
- the window: from the first hunk header matching `@@ -a,b +c,d @@` to the last one,
  `a_last + b_last - a_first <= 80` and the same for c/d (a hunk range of exactly one line is written
  without its count, `@@ -5 +5,2 @@`, and that header does not match);
- add-only: no line after the header starts with `-`.

Here the add-only check generalizes to "every chunk's type is in `edit_types`", which is the paper's
check for `[add]` and no check for `[add, delete, replace]`.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

HEADER = re.compile(r"@@ -(\d+),(\d+) \+(\d+),(\d+) @@")


def paper_diff(r: dict[str, Any]) -> str:
    """The paper's diff text of a record."""
    lines = difflib.unified_diff(r["old_contents"].splitlines(), r["new_contents"].splitlines(),
                                 fromfile=r["old_file"], tofile=r["new_file"], lineterm="")
    return "\n".join(lines)


def diff_runs(diff: str) -> list[tuple[int, int]]:
    """(removed, added) line counts of each run of +/- lines after the two header lines."""
    runs: list[tuple[int, int]] = []
    removed = added = 0
    inside = False
    for line in diff.split("\n")[2:]:
        mark = line[:1]
        if mark in ("+", "-") and line:
            inside = True
            if mark == "-":
                removed += 1
            else:
                added += 1
        elif inside:
            runs.append((removed, added))
            removed = added = 0
            inside = False
    if inside:
        runs.append((removed, added))
    return runs


def window_ok(diff: str, max_window: int) -> bool:
    headers = HEADER.findall(diff)
    if not headers:
        return False
    (a1, _, c1, _), (a2, b2, c2, d2) = headers[0], headers[-1]
    old = int(a2) + int(b2) - 1 - int(a1) + 1
    new = int(c2) + int(d2) - 1 - int(c1) + 1
    return old <= max_window and new <= max_window


def chunk_type(removed: int, added: int) -> str:
    return "add" if not removed else "delete" if not added else "replace"


def keep(r: dict[str, Any], enc, *, max_chars: int = 32768, max_tokens: int = 8192, max_chunk_lines: int = 5,
         max_window_lines: int = 80, edit_types: tuple[str, ...] = ("add",)) -> bool:
    """Whether the paper's filters keep record `r`."""
    text = r["old_contents"] + r["new_contents"]
    if len(text) > max_chars:
        return False
    try:
        if 2 * len(enc.encode(text)) > max_tokens:
            return False
    except ValueError:  # special-token text
        return False
    diff = paper_diff(r)
    runs = diff_runs(diff)
    if len(runs) == 1:
        return False
    if any(removed + added > max_chunk_lines for removed, added in runs):
        return False
    if not window_ok(diff, max_window_lines):
        return False
    return all(chunk_type(*run) in edit_types for run in runs)


def reference_filter(path: str | Path, **config: Any) -> Iterator[dict[str, Any]]:
    """The records of a JSONL file that the paper's filters keep, one after the other."""
    import tiktoken

    from nep.data.tokens import ensure_bpe_file

    ensure_bpe_file("o200k_base")  # tiktoken's own file, offline; loaded as the paper's code loads it
    enc = tiktoken.get_encoding("o200k_base")
    with open(path, encoding="utf-8") as f:
        for line in f:
            r = json.loads(line)
            if keep(r, enc, **config):
                yield r


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="The paper's filters, serially, over a JSONL file of records.")
    parser.add_argument("path")
    parser.add_argument("--edit-types", default="add")
    parser.add_argument("--out", default=None, help="write the survivors here (JSONL)")
    args = parser.parse_args()
    kept = reference_filter(args.path, edit_types=tuple(args.edit_types.split(",")))
    n = 0
    with open(args.out or os.devnull, "w", encoding="utf-8") as f:
        for r in kept:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    print(n)


if __name__ == "__main__":
    main()
