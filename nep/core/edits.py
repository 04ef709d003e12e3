"""The edit model: diffs, edit chunks and the intermediate ("current") version.

A *chunk* is a run of consecutive changed lines in the difflib unified diff of old → new,
i.e. one non-equal opcode of `difflib.SequenceMatcher` (the same matcher `difflib.unified_diff`
uses, autojunk included, so chunking agrees with the paper's scripts). Line numbers are 0-based
and half-open.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal


def common_affixes(a: Sequence, b: Sequence) -> tuple[int, int]:
    """Lengths of the longest common prefix of `a` and `b` and of their longest common suffix in
    what the prefix leaves (the two never overlap): strings, token lists, any sequences."""
    shortest = min(len(a), len(b))
    prefix = 0
    while prefix < shortest and a[prefix] == b[prefix]:
        prefix += 1
    suffix = 0
    while suffix < shortest - prefix and a[-1 - suffix] == b[-1 - suffix]:
        suffix += 1
    return prefix, suffix


EditType = Literal["add", "delete", "replace"]
EDIT_TYPES: tuple[EditType, ...] = ("add", "delete", "replace")


@dataclass(frozen=True)
class Chunk:
    """One edit chunk: old[old_start:old_end] was replaced by new[new_start:new_end]."""

    old_start: int
    old_end: int
    new_start: int
    new_end: int
    old_lines: tuple[str, ...]
    new_lines: tuple[str, ...]

    @property
    def type(self) -> EditType:
        if not self.old_lines:
            return "add"
        if not self.new_lines:
            return "delete"
        return "replace"

    @property
    def changed_lines(self) -> int:
        """Number of `-` and `+` lines the chunk shows in a unified diff."""
        return len(self.old_lines) + len(self.new_lines)


def split_lines(text: str) -> list[str]:
    """Lines with their line endings kept, so joining them gives `text` back."""
    return text.splitlines(keepends=True)


def compute_chunks(old: str | list[str], new: str | list[str]) -> list[Chunk]:
    """Edit chunks of old → new, in file order."""
    a = split_lines(old) if isinstance(old, str) else old
    b = split_lines(new) if isinstance(new, str) else new
    matcher = difflib.SequenceMatcher(None, a, b)
    return [
        Chunk(i1, i2, j1, j2, tuple(a[i1:i2]), tuple(b[j1:j2]))
        for tag, i1, i2, j1, j2 in matcher.get_opcodes()
        if tag != "equal"
    ]


def window_lines(chunks: list[Chunk]) -> tuple[int, int]:
    """Lines spanned from the first chunk's start to the last chunk's end, in (old, new)."""
    if not chunks:
        return 0, 0
    first, last = chunks[0], chunks[-1]
    return last.old_end - first.old_start, last.new_end - first.new_start


def unified_diff(old: str, new: str, *, old_name: str = "", new_name: str = "", context: int = 3) -> str:
    """difflib's unified diff of old → new as one string, with git's marker for a missing final newline."""
    out: list[str] = []
    for line in difflib.unified_diff(
        split_lines(old), split_lines(new), fromfile=old_name, tofile=new_name, n=context
    ):
        if line.endswith("\n"):
            out.append(line)
        else:
            out.append(line + "\n\\ No newline at end of file\n")
    return "".join(out)


def revert_chunk(new: str, chunk: Chunk) -> str:
    """`new` with one chunk undone: its new lines replaced by its old lines."""
    b = split_lines(new)
    return "".join(b[: chunk.new_start] + list(chunk.old_lines) + b[chunk.new_end :])


def current_version(old: str, new: str, chunks: list[Chunk] | None = None) -> str:
    """The intermediate version: `new` with its last chunk reverted, for every edit type.

    The paper reverts only a last chunk that is a pure insertion; reverting by line ranges works
    just as well for deletions and replacements. Raises ValueError when there is no chunk.
    """
    chunks = compute_chunks(old, new) if chunks is None else chunks
    if not chunks:
        raise ValueError("old and new are identical: there is no chunk to revert")
    return revert_chunk(new, chunks[-1])


def apply_chunks(base: str, chunks: list[Chunk]) -> str:
    """Apply chunks computed against `base` (as old) and return the edited text."""
    a = split_lines(base)
    out: list[str] = []
    pos = 0
    for c in chunks:
        out.extend(a[pos : c.old_start])
        out.extend(c.new_lines)
        pos = c.old_end
    out.extend(a[pos:])
    return "".join(out)


def trim_to_window(old: str, new: str, context_lines: int, chunks: list[Chunk] | None = None) -> tuple[str, str]:
    """old and new cut to the edit window (first chunk to last) plus `context_lines` unchanged lines
    on each side; the lines cut are identical in both. `context_lines` <= 0 keeps whole files."""
    chunks = compute_chunks(old, new) if chunks is None else chunks
    if context_lines <= 0 or not chunks:
        return old, new
    a, b = split_lines(old), split_lines(new)
    first, last = chunks[0], chunks[-1]
    start = max(0, first.old_start - context_lines)  # == first.new_start - context_lines: same prefix
    return (
        "".join(a[start : last.old_end + context_lines]),
        "".join(b[start : last.new_end + context_lines]),
    )


# ------------------------------------------------------------------ the paper's diff view


def diff_spans(old: str, new: str) -> tuple[list[tuple[int, int, int, int]], int, int]:
    """The paper's edit chunks as bare (old_start, old_end, new_start, new_end) spans, and the
    line counts of old and new (see `diff_chunks`, which builds Chunks from them)."""
    a, b = old.splitlines(), new.splitlines()
    spans = [(i1, i2, j1, j2) for tag, i1, i2, j1, j2 in _sequence_matcher()(None, a, b).get_opcodes() if tag != "equal"]
    return spans, len(a), len(b)


def diff_chunks(old: str, new: str) -> list[Chunk]:
    """Edit chunks as the paper's unified diff shows them: lines are compared without their line
    endings (`str.splitlines()`), so a change of only the file's final newline is no chunk. The
    matching is difflib's (autojunk included), through cydifflib when installed.

    Line numbers index `split_lines` of old and new (the same lines, endings kept), so the chunks
    work with `revert_chunk`/`apply_chunks` like those of `compute_chunks`."""
    spans, _, _ = diff_spans(old, new)
    if not spans:
        return []
    a_full, b_full = split_lines(old), split_lines(new)
    return [Chunk(i1, i2, j1, j2, tuple(a_full[i1:i2]), tuple(b_full[j1:j2])) for i1, i2, j1, j2 in spans]


def _sequence_matcher():
    """cydifflib's SequenceMatcher (a C++ port of difflib's, same results, several times faster),
    else difflib's."""
    try:
        import cydifflib

        return cydifflib.SequenceMatcher
    except ImportError:
        return difflib.SequenceMatcher


@dataclass(frozen=True)
class Hunk:
    """One unified-diff hunk: old[old_start:old_end] against new[new_start:new_end], its chunks
    plus up to `context` unchanged lines around them (0-based, half-open)."""

    old_start: int
    old_end: int
    new_start: int
    new_end: int

    def header(self) -> tuple[int, int, int, int]:
        """The numbers of its `@@ -a,b +c,d @@` header, as difflib writes them (1-based start; an
        empty range names the line before it)."""
        b, d = self.old_end - self.old_start, self.new_end - self.new_start
        return self.old_start + (1 if b else 0), b, self.new_start + (1 if d else 0), d


def diff_hunks(chunks: list[Chunk] | list[tuple[int, int, int, int]], old_lines: int, new_lines: int,
               context: int = 3) -> list[Hunk]:
    """The hunks of a unified diff with `context` lines (difflib's grouping: two chunks share a
    hunk when at most 2 × context unchanged lines separate them). `chunks` are Chunks or
    `diff_spans`; `old_lines`/`new_lines` are the files' line counts."""
    spans = [(c.old_start, c.old_end, c.new_start, c.new_end) if isinstance(c, Chunk) else c for c in chunks]
    hunks: list[Hunk] = []
    first = last = None
    for span in spans:
        if last is not None and span[0] - last[1] > 2 * context:
            hunks.append(_hunk(first, last, old_lines, new_lines, context))
            first = None
        first = first or span
        last = span
    if last is not None:
        hunks.append(_hunk(first, last, old_lines, new_lines, context))
    return hunks


def _hunk(first: tuple[int, int, int, int], last: tuple[int, int, int, int], old_lines: int, new_lines: int,
          context: int) -> Hunk:
    before = min(context, first[0], first[2])
    after = min(context, old_lines - last[1], new_lines - last[3])
    return Hunk(first[0] - before, last[1] + after, first[2] - before, last[3] + after)


def hunk_window(hunks: list[Hunk]) -> tuple[int, int] | None:
    """Lines from the first hunk's header start to the last hunk's end, in (old, new), as the paper
    measures its edit window: only headers that carry both counts (`@@ -a,b +c,d @@`) take part,
    since difflib writes a one-line range without its count (`@@ -5 +5,2 @@`) and the paper's pattern
    needs it. None when no header qualifies (the paper then drops the record)."""
    headers = [h.header() for h in hunks if h.old_end - h.old_start != 1 and h.new_end - h.new_start != 1]
    if not headers:
        return None
    (a1, _, c1, _), (a2, b2, c2, d2) = headers[0], headers[-1]
    return a2 + b2 - a1, c2 + d2 - c1
