"""The `propagate` baseline: repeat the most recent edit's pattern at the next place it applies.

Not learned, deterministic. The edit history is the diff original → current; its *last* chunk in
file order is taken as the most recent edit (the next edit of an example follows the history in
file order, see nep.core.edits.current_version). What is repeated depends on the chunk:

1. **Line transformation** (a replacement of k lines by k lines): each old line → new line pair is
   reduced to a textual substitution ``a → b`` (the differing middle after removing the common
   prefix and suffix; when the old middle is empty, as in ``f(x)`` → ``f(x, y)``, it is widened by
   one character of context, giving ``) → , y)``). The next block of k lines in the current version
   where every line is *similar* to its old line (see 2.), contains its ``a`` and not already its
   ``b`` gets the substitutions (first occurrence in each line). When no such block exists and
   k > 1, the last pair's substitution alone is repeated on the next single line it fits.
2. **Insertion** after an anchor line (the line before the inserted block; the line after it when
   that one is blank): the inserted lines are inserted again after the next line *similar* to the
   anchor (same skeleton: words abstracted except common statement keywords; or a difflib
   ratio ≥ 0.8), re-indented by the indentation difference of the two anchors, with the words
   that differ between the two anchors renamed (anchor ``def foo(self):``, inserted ``# foo``,
   target ``def bar(self):`` → ``# bar``). A target already followed by those lines is skipped.
3. **Deletion**: the next block of lines equal to the deleted ones (ignoring surrounding whitespace)
   is deleted too.

Targets are searched after the chunk first, then from the top of the file. When nothing applies,
the prediction is the current version unchanged (the identity floor).
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterator
from dataclasses import dataclass

from nep.core.edits import Chunk, common_affixes, compute_chunks, split_lines

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Propagation:
    """The predicted next version and the rule that produced it."""

    text: str
    rule: str  # transform | insert | delete | identity


def _body(line: str) -> str:
    return line.rstrip("\r\n")


def _eol(line: str) -> str:
    return line[len(_body(line)) :]


def _indent(line: str) -> str:
    return line[: len(line) - len(line.lstrip(" \t"))]


def substitution(old: str, new: str) -> tuple[str, str]:
    """The differing middle ``a → b`` of one line change; `a` is non-empty unless `old` is."""
    p, s = common_affixes(old, new)
    a, b = old[p : len(old) - s], new[p : len(new) - s]
    if not a and s:  # pure insertion inside the line: anchor on the next character
        a, b = old[p : p + 1], new[p : len(new) - s + 1]
    elif not a and p:
        a, b = old[p - 1 : p], new[p - 1 : len(new) - s]
    return a, b


# Words kept in a skeleton: statement keywords common to the languages nep handles.
KEYWORDS = frozenset(  # fmt: skip
    {
        "def", "class", "return", "if", "elif", "else", "for", "while", "try", "except", "catch", "finally",
        "with", "import", "from", "package", "func", "function", "fn", "const", "let", "var", "public",
        "private", "protected", "static", "void", "struct", "type", "interface", "new", "throw", "raise",
        "assert", "yield", "await", "async", "print", "include", "define",
    }
)


def skeleton(line: str) -> str:
    """A line's shape: indentation dropped, every word but a keyword abstracted to ``_``."""
    return _WORD.sub(lambda m: m.group(0) if m.group(0) in KEYWORDS else "_", line.strip())


def similar(a: str, b: str) -> bool:
    a, b = a.strip(), b.strip()
    if not a or not b:
        return False
    return skeleton(a) == skeleton(b) or difflib.SequenceMatcher(None, a, b).ratio() >= 0.8


def _search_order(n: int, start: int, end: int) -> Iterator[int]:
    """Line indexes from `end` to the bottom, then from the top up to `start`."""
    yield from range(end, n)
    yield from range(0, start)


def _transform(lines: list[str], chunk: Chunk) -> list[str] | None:
    pairs = list(zip(chunk.old_lines, chunk.new_lines))
    result = _transform_block(lines, chunk, pairs)
    if result is None and len(pairs) > 1:  # no k-line block: repeat the last line's change alone
        result = _transform_block(lines, chunk, pairs[-1:])
    return result


def _transform_block(lines: list[str], chunk: Chunk, pairs: list[tuple[str, str]]) -> list[str] | None:
    subs = [substitution(_body(o), _body(n)) for o, n in pairs]
    if any(not a for a, _ in subs):
        return None
    k = len(subs)
    for i in _search_order(len(lines) - k + 1, chunk.new_start, chunk.new_end):
        block = [_body(x) for x in lines[i : i + k]]
        if all(
            a in line and b not in line and similar(_body(o), line)
            for (a, b), line, (o, _) in zip(subs, block, pairs)
        ):
            edited = [
                line.replace(a, b, 1) + _eol(orig)
                for (a, b), line, orig in zip(subs, block, lines[i : i + k])
            ]
            return lines[:i] + edited + lines[i + k :]
    return None


def word_mapping(anchor: str, target: str) -> dict[str, str]:
    """Words that differ between two lines of the same skeleton, anchor word → target word
    (empty when the skeletons differ or a word would map two ways)."""
    if skeleton(anchor) != skeleton(target):
        return {}
    mapping: dict[str, str] = {}
    for a, b in zip(_WORD.findall(anchor), _WORD.findall(target)):
        if mapping.setdefault(a, b) != b:
            return {}
    return {a: b for a, b in mapping.items() if a != b}


def _adapt(inserted: tuple[str, ...], anchor: str, target: str) -> list[str]:
    """The inserted lines, moved from after `anchor` to after `target`: re-indented, and the
    anchor's words that differ in the target renamed."""
    old_indent, new_indent = _indent(anchor), _indent(target)
    mapping = word_mapping(anchor, target)
    rename = re.compile(r"\b(" + "|".join(map(re.escape, mapping)) + r")\b") if mapping else None
    out = []
    for line in inserted:
        if rename is not None:
            line = rename.sub(lambda m: mapping[m.group(0)], line)
        if line.startswith(old_indent) and line.strip():
            line = new_indent + line[len(old_indent) :]
        out.append(line)
    return out


def _insert(lines: list[str], chunk: Chunk) -> list[str] | None:
    inserted = chunk.new_lines
    before = chunk.new_start - 1
    after = chunk.new_end
    if before >= 0 and lines[before].strip():
        anchor, offset = before, 1  # insert after the target
    elif after < len(lines) and lines[after].strip():
        anchor, offset = after, 0  # insert before the target
    else:
        return None
    anchor_line = _body(lines[anchor])
    for t in _search_order(len(lines), chunk.new_start, after + 1 - offset):
        if t == anchor or not similar(anchor_line, _body(lines[t])):
            continue
        new_block = _adapt(inserted, anchor_line, _body(lines[t]))
        at = t + offset
        existing = [x.strip() for x in lines[at : at + len(new_block)]]
        if existing == [x.strip() for x in new_block]:
            continue
        head, tail = lines[:at], lines[at:]
        if head and not head[-1].endswith("\n"):  # inserting after a final line without newline
            head[-1] += "\n"
            new_block[-1] = _body(new_block[-1])
        if not new_block[-1].endswith("\n") and tail:
            new_block[-1] += "\n"
        return head + new_block + tail
    return None


def _delete(lines: list[str], chunk: Chunk) -> list[str] | None:
    deleted = [x.strip() for x in chunk.old_lines]
    if not any(deleted):
        return None
    k = len(deleted)
    for i in _search_order(len(lines) - k + 1, chunk.new_start, chunk.new_end):
        if [x.strip() for x in lines[i : i + k]] == deleted:
            return lines[:i] + lines[i + k :]
    return None


def propagate(original: str, current: str) -> Propagation:
    """Predict the next version by repeating the last edit of original → current (rules above)."""
    chunks = compute_chunks(original, current)
    if not chunks:
        return Propagation(current, "identity")
    chunk = chunks[-1]
    lines = split_lines(current)
    if chunk.type == "replace" and len(chunk.old_lines) == len(chunk.new_lines):
        rule, result = "transform", _transform(lines, chunk)
    elif chunk.type == "add":
        rule, result = "insert", _insert(lines, chunk)
    elif chunk.type == "delete":
        rule, result = "delete", _delete(lines, chunk)
    else:
        rule, result = "identity", None
    if result is None:
        return Propagation(current, "identity")
    return Propagation("".join(result), rule)
