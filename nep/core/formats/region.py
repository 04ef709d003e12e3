"""`region`: an editable region, as Zed's Zeta does. The prompt marks the lines around the edit
history's last change (`process.format.region_lines` lines each side of it, clipped to the window) in the
current version; the model rewrites only those lines, and the rest of the window stays as it is.

A next edit outside the region cannot be written (training drops the example, counted as
`format_edit_outside_region`). An answer that holds a region marker, or that does not end with a
newline where lines follow the region, is refused (`region_malformed`, `region_unterminated`).
"""

from __future__ import annotations

from nep.core.edits import compute_chunks, split_lines
from nep.core.formats.base import AnswerFormat, Applied, Unrepresentable, Versions

REGION_START = "<|editable_region_start|>"
REGION_END = "<|editable_region_end|>"


def region_bounds(v: Versions, lines: int) -> tuple[int, int]:
    """[start, end) lines of the current version: the edit history's last change (in the current
    version's lines) and `lines` lines each side, clipped; the whole version without a history."""
    current = split_lines(v.current)
    chunks = compute_chunks(v.original, current)
    if not chunks:
        return 0, len(current)
    last = chunks[-1]
    return max(0, last.new_start - lines), min(len(current), max(last.new_end, last.new_start) + lines)


class Region(AnswerFormat):
    name = "region"
    chat_answer = (
        f"The current version marks an editable region between a {REGION_START} line and a {REGION_END} line. "
        "The next edit is inside it. Answer with the lines of that region after the edit, every line of the "
        "region and nothing outside it, without the marker lines, between <next_version> and </next_version> "
        "tags. Put nothing else between the tags: no explanations, no line numbers, no code fence. Anything "
        "outside the tags is ignored."
    )
    chat_request = "Write the editable region after the next edit inside <next_version> tags."

    @property
    def region_lines(self) -> int:
        if self.options is None:
            raise ValueError("format 'region' needs its options (process.format.region_lines)")
        return self.options.region_lines

    def _split(self, v: Versions) -> tuple[str, str, str]:
        lines = split_lines(v.current)
        start, end = region_bounds(v, self.region_lines)
        return "".join(lines[:start]), "".join(lines[start:end]), "".join(lines[end:])

    def shown_current(self, v: Versions) -> str:
        before, region, after = self._split(v)
        if region and not region.endswith("\n"):
            region += "\n"  # the end marker starts its own line
        return f"{before}{REGION_START}\n{region}{REGION_END}\n{after}"

    def answer(self, v: Versions, next_version: str) -> str:
        before, _, after = self._split(v)
        if not next_version.startswith(before) or not next_version.endswith(after) \
                or len(before) + len(after) > len(next_version):
            raise Unrepresentable("edit_outside_region")
        return next_version[len(before) : len(next_version) - len(after)]

    def apply(self, answer: str, v: Versions) -> Applied:
        if REGION_START in answer or REGION_END in answer:
            return Applied(None, "region_malformed")
        before, _, after = self._split(v)
        if after and answer and not answer.endswith("\n"):
            return Applied(None, "region_unterminated")  # its last line would run into the next one
        return Applied(before + answer + after)
