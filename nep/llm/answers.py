"""Reading a chat model's yes/no answer."""

from __future__ import annotations

import re

_FENCE = re.compile(r"```[\w+-]*")
_ANSWER_IS = re.compile(r"\banswer\b\s*(?:is\s*)?[:=-]?\s*\W*\b(yes|no)\b")


def parse_yes_no(text: str | None) -> bool | None:
    """True/False for a yes/no answer, tolerant of case, punctuation, markdown, code fences and a
    sentence around it; None when there is no answer or it is ambiguous (both words, none first)."""
    if not text:
        return None
    t = _FENCE.sub(" ", text).lower()
    if answers := _ANSWER_IS.findall(t):
        return answers[-1] == "yes"
    words = re.findall(r"[a-z]+", t)
    if not words:
        return None
    if words[0] in ("yes", "no"):
        return words[0] == "yes"
    found = {w for w in words if w in ("yes", "no")}
    return found.pop() == "yes" if len(found) == 1 else None


def is_yes_no(text: str) -> bool:
    """Whether `text` is a usable yes/no answer: what the response cache keeps for label and judge
    (anything else, an error page served with 200 or a refusal, is asked again on the next run)."""
    return parse_yes_no(text) is not None
