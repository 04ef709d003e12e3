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

Constrained decoding (a predictor's `constrain: true`, `BlocksGrammar`) lets greedy decoding write
only answers that can still apply, written as training writes them: outside a block only the
ORIGINAL marker, or one empty line and the end; inside an original block only lines that continue a
run of the current version's lines; the divider only once that run occurs exactly once and overlaps
no earlier block; the end only outside a block. The updated lines are free. The answer stays the model's own most likely one among those allowed; one
cut by the token limit is still incomplete.
"""

from __future__ import annotations

import difflib

from nep.core.formats.base import AnswerFormat, Applied, Versions

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


def edit_blocks(old: str, new: str) -> str:
    """`old` → `new` as edit blocks: each change with as many unchanged lines around it as make its
    original block occur once in `old` (at worst the whole text, which occurs once); blocks whose
    context overlaps become one. The training answer (current → next) and the edit history shown as
    blocks (original → current, `process.format.history`)."""
    cur, nxt = _lines(old), _lines(new)
    spans = []  # (start, end) in cur, (start, end) in nxt
    for tag, i1, i2, j1, j2 in difflib.SequenceMatcher(None, cur, nxt, autojunk=False).get_opcodes():
        if tag == "equal":
            continue
        before = after = 0 if i2 > i1 else 1  # an insertion needs a line to anchor it
        while True:  # ends at the latest with the whole text, which occurs once
            a, b = max(0, i1 - before), min(len(cur), i2 + after)
            if b > a and len(_places(cur, cur[a:b])) == 1:
                break
            before, after = before + 1, after + 1
        spans.append([a, b, j1 - (i1 - a), j2 + (b - i2)])
    merged: list[list[int]] = []
    for span in spans:  # blocks whose context overlaps become one
        if merged and span[0] <= merged[-1][1]:
            merged[-1][1], merged[-1][3] = span[1], span[3]
        else:
            merged.append(span)
    return render_blocks([(cur[a:b], nxt[c:d]) for a, b, c, d in merged])


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
        return edit_blocks(v.current, next_version)

    def grammar(self, v: Versions) -> BlocksGrammar:
        return BlocksGrammar(v.current)

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


def _fits(line: str, part: str) -> bool:
    """Whether `part` begins `line`; a decoded text ending in U+FFFD (a character whose bytes are not
    all written yet) fits where `line` has a non-ASCII character."""
    base = part.rstrip("\ufffd")
    if base == part:
        return line.startswith(part)
    return line.startswith(base) and len(line) > len(base) and ord(line[len(base)]) > 127


class BlocksGrammar:
    """The prefixes of a blocks answer that can still apply to `current` (module docstring)."""

    def __init__(self, current: str):
        self.cur = _lines(current)
        self._nul = "\0" in current
        self._parsed: dict[str, tuple | None] = {}  # complete lines → _state (decoding asks one prefix per candidate token)

    def _split(self, prefix: str):
        """(what may follow the prefix's complete lines, its last, partial line). What may follow: None
        (the lines break the grammar), or (state, whether the divider may come, the lines of the
        current version that may come next, those lines joined behind NUL characters)."""
        cut = prefix.rfind("\n") + 1
        done, part = prefix[:cut], prefix[cut:]
        if done not in self._parsed:
            if len(self._parsed) > 4096:
                self._parsed.clear()
            parsed = self._state(done.split("\n")[:-1])
            if parsed is not None:
                state, original, spans = parsed
                nexts: tuple[str, ...] = ()
                if state == "original":
                    n = len(original)
                    starts = self._continues(original) if original else range(len(self.cur))
                    nexts = tuple(dict.fromkeys(self.cur[i + n] for i in starts if i + n < len(self.cur)))
                divider = state == "original" and self._span(original, spans) is not None
                parsed = (state, divider, nexts, "".join("\0" + line for line in nexts))
            self._parsed[done] = parsed
        return self._parsed[done], part

    def _continues(self, original: list[str]) -> list[int]:
        """Where in the current version `original` (whole lines) occurs."""
        return _places(self.cur, original)

    def _span(self, original: list[str], spans: list[tuple[int, int]]) -> tuple[int, int] | None:
        """The one place `original` can replace, if it is unique and overlaps no earlier block."""
        places = self._continues(original) if original else []
        if len(places) != 1:
            return None
        start, end = places[0], places[0] + len(original)
        if any(start < e and s < end for s, e in spans):
            return None
        return start, end

    def _state(self, lines: list[str]):
        """(state, the open block's original lines, the places of the blocks so far) after these complete
        lines, or None when they break the grammar. The updated lines are free, so not kept."""
        state, original, spans = "out", [], []
        for line in lines:
            if state == "out":
                if line == ORIGINAL:
                    state, original = "original", []
                elif not line:  # an empty line ends the answer (the template's newline)
                    state = "end"
                else:
                    return None
            elif state == "end":
                return None
            elif state == "original":
                if line == DIVIDER:
                    span = self._span(original, spans)
                    if span is None:
                        return None
                    spans.append(span)
                    state = "updated"
                else:
                    original.append(line)
                    if not self._continues(original):
                        return None
            elif line == UPDATED:
                state = "out"
        return state, original, spans

    def allows(self, prefix: str) -> bool:
        parsed, part = self._split(prefix)
        if parsed is None:
            return False
        state, divider, nexts, joined = parsed
        if state == "out":
            return ORIGINAL.startswith(part)
        if state == "end":
            return not part
        if state == "original":
            if divider and DIVIDER.startswith(part):
                return True
            if not self._nul and "\0" not in part and not part.endswith("\ufffd"):
                return "\0" + part in joined  # the part begins one of the lines
            return any(_fits(line, part) for line in nexts)
        return True

    def may_end(self, prefix: str) -> bool:
        parsed, part = self._split(prefix)
        return parsed is not None and parsed[0] in ("out", "end") and not part
