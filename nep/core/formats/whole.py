"""`whole`: the paper's answer, the complete next version of the window (the default)."""

from __future__ import annotations

from typing import Any

from nep.core.extract import Extraction, Style, extract_answer
from nep.core.formats.base import AnswerFormat, Applied, Versions


def _current(example: dict[str, Any]) -> str | None:
    from nep.core.prompts import parse_prompt

    try:
        return parse_prompt(example["prompt"])["current"]
    except (KeyError, ValueError):
        current = example.get("current")
        return current if isinstance(current, str) else None


class Whole(AnswerFormat):
    name = "whole"
    chat_answer = (
        "Answer with the complete file after that edit, every line of it, between <next_version> and "
        "</next_version> tags. Put nothing else between the tags: no explanations, no line numbers, no code "
        "fence. Anything outside the tags is ignored."
    )
    chat_request = "Write the complete next version of the file inside <next_version> tags."

    def answer(self, v: Versions, next_version: str) -> str:
        return next_version

    def apply(self, answer: str, v: Versions) -> Applied:
        return Applied(answer)

    def read(self, raw: str, style: Style, example: dict[str, Any]) -> Extraction:
        # the answer is the file: a unified diff is refused unless the file is one (nep.core.extract)
        return extract_answer(raw, style, current=_current(example))
