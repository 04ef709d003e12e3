"""`blocks`: edit blocks, only the changed lines as search/replace pairs (Sweep reported them
better than unified diffs and whole rewrites for small next-edit models):

    <<<<<<< ORIGINAL
    lines of the current version, exactly
    =======
    the lines that replace them
    >>>>>>> UPDATED

Each original block must match exactly one place in the current version (whole lines, compared
without their newline); blocks may not overlap; an empty answer means no change. An answer that
does not apply gives no next version and says why: `blocks_malformed` (not blocks),
`block_empty` (an original block without lines), `block_not_found`, `block_ambiguous` (several
places), `blocks_overlap`. Nothing is guessed. Training answers add unchanged lines around a
change until its original block is unique.
"""

from __future__ import annotations

import difflib

from nep.core.formats.base import AnswerFormat, Applied, Unrepresentable, Versions

ORIGINAL = "<<<<<<< ORIGINAL"
DIVIDER = "======="
UPDATED = ">>>>>>> UPDATED"


def _lines(text: str) -> list[str]:
    """A version as lines without newlines; a final newline is a last, empty line ("a\\n" → a, "")."""
    return text.split("\n")


def _places(lines: list[str], block: list[str]) -> list[int]:
    k = len(block)
    return [i for i in range(len(lines) - k + 1) if lines[i : i + k] == block]


def parse_blocks(answer: str) -> list[tuple[list[str], list[str]]] | str:
    """(original lines, updated lines) pairs of an answer, or the reason it is not blocks."""
    blocks: list[tuple[list[str], list[str]]] = []
    state, original, updated = "out", [], []
    for line in answer.split("\n"):
        if state == "out":
            if line == ORIGINAL:
                state, original, updated = "original", [], []
            elif line.strip():
                return "blocks_malformed"
        elif state == "original":
            if line == DIVIDER:
                state = "updated"
            else:
                original.append(line)
        elif line == UPDATED:
            blocks.append((original, updated))
            state = "out"
        else:
            updated.append(line)
    return "blocks_malformed" if state != "out" else blocks


def render_blocks(blocks: list[tuple[list[str], list[str]]]) -> str:
    return "".join("\n".join([ORIGINAL, *o, DIVIDER, *u, UPDATED]) + "\n" for o, u in blocks)


class Blocks(AnswerFormat):
    name = "blocks"
    chat_answer = (
        "Answer with edit blocks: for each place you change, a line <<<<<<< ORIGINAL, the lines of the current "
        "version you replace (copied exactly, with enough unchanged lines around them that they occur only once "
        "in the file), a line =======, the lines that replace them, and a line >>>>>>> UPDATED. Write only the "
        "blocks, between <next_version> and </next_version> tags; empty tags mean no change. Anything outside "
        "the tags is ignored."
    )
    chat_request = "Write the next edit as edit blocks inside <next_version> tags."

    def answer(self, v: Versions, next_version: str) -> str:
        cur, new = _lines(v.current), _lines(next_version)
        spans = []  # (start, end) in cur, (start, end) in new
        for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, cur, new, autojunk=False).get_opcodes():
            if tag == "equal":
                continue
            before = after = 0 if i2 > i1 else 1  # an insertion needs a line to anchor it
            while True:
                a, b = max(0, i1 - before), min(len(cur), i2 + after)
                if b > a and len(_places(cur, cur[a:b])) == 1:
                    break
                if a == 0 and b == len(cur):
                    raise Unrepresentable("block_ambiguous")
                before, after = before + 1, after + 1
            spans.append([a, b, j1 - (i1 - a), j2 + (b - i2)])
        merged: list[list[int]] = []
        for span in spans:  # blocks whose context overlaps become one
            if merged and span[0] <= merged[-1][1]:
                merged[-1][1], merged[-1][3] = span[1], span[3]
            else:
                merged.append(span)
        return render_blocks([(cur[a:b], new[c:d]) for a, b, c, d in merged])

    def apply(self, answer: str, v: Versions) -> Applied:
        blocks = parse_blocks(answer)
        if isinstance(blocks, str):
            return Applied(None, blocks)
        cur = _lines(v.current)
        edits = []
        for original, updated in blocks:
            if not original:
                return Applied(None, "block_empty")
            places = _places(cur, original)
            if not places:
                return Applied(None, "block_not_found")
            if len(places) > 1:
                return Applied(None, "block_ambiguous")
            edits.append((places[0], places[0] + len(original), updated))
        edits.sort()
        if any(e[0] < d[1] for d, e in zip(edits, edits[1:], strict=False)):
            return Applied(None, "blocks_overlap")
        for start, end, updated in reversed(edits):
            cur[start:end] = updated
        return Applied("\n".join(cur))
