"""Extract the predicted next version from a model's raw output.

Two output styles exist:

- ``completion``: a base or fine-tuned model continuing the training prompt, whose text after the
  ``<|next_version|>`` line *is* the next version followed by the template newline
  (nep.core.prompts). The output is cut at the first training marker the model starts to write
  after it (it began another example), a repeated ``<|next_version|>`` line (the model echoed the
  prompt) moves the start past it, and exactly one trailing newline, the template's, is removed.
- ``chat``: an instruct model asked for the complete next version inside a required
  ``<next_version>`` … ``</next_version>`` tag. The last closed tag wins (models sometimes mention
  the tag while reasoning before answering); an opening tag the output never closes (it ran out of
  tokens) gives everything after it. Without a tag, the last fenced code block is taken; without
  one either, there is nothing to extract.

A third style, ``direct``, is for predictors whose output is the next version by construction
(identity, propagate): it is taken as is.

In the model styles a body that is one fenced code block (```lang … ```) is unwrapped. An output from
which no next version can be read gives ``None``; callers count those.

The style says how an answer is read out of its wrapper; what the answer *is* (the whole next
version, an editable region, edit blocks) and how it becomes the next version is its answer
format (nep.core.formats), which reads through `extract_body` (or, for the whole version,
`extract_answer`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from nep.core.prompts import MARKERS, NEXT, strip_template_newline

Style = Literal["completion", "chat", "direct"]

OPEN_TAG = "<next_version>"
CLOSE_TAG = "</next_version>"

_CLOSED_TAG = re.compile(re.escape(OPEN_TAG) + r"(.*?)" + re.escape(CLOSE_TAG), re.DOTALL)
# A fenced block: an opening fence (``` or more, optional info string) on its own line, the body,
# and a closing fence of the same length on its own line (or the end of the text).
_FENCE = re.compile(
    r"^(?P<fence>`{3,})[^\n`]*\n(?P<body>.*?)(?:^(?P=fence)[ \t]*$|\Z)", re.DOTALL | re.MULTILINE
)


@dataclass(frozen=True)
class Extraction:
    """The extracted next version (None when nothing could be extracted) and how it was found."""

    text: str | None
    method: str  # closed_tag | open_tag | fence | marker | completion | direct | none

    @property
    def ok(self) -> bool:
        return self.text is not None


def _strip_one_newline(body: str) -> str:
    """Drop the newline right after an opening tag or marker: ``<tag>\\ncode`` → ``code``."""
    if body.startswith("\r\n"):
        return body[2:]
    if body.startswith("\n"):
        return body[1:]
    return body


def unwrap_fence(body: str) -> str:
    """The body of a text that is exactly one fenced code block (surrounding blank space allowed),
    else the text unchanged."""
    stripped = body.strip()
    if not stripped.startswith("```"):
        return body
    match = _FENCE.match(stripped)
    if match is None or match.end() != len(stripped):
        return body
    return match.group("body")


def last_fenced_block(text: str) -> str | None:
    """The body of the last fenced code block in `text`, or None."""
    blocks = [m.group("body") for m in _FENCE.finditer(text)]
    return blocks[-1] if blocks else None


def _cut_at_markers(text: str) -> str:
    """Text up to the first training marker line, if the model started another section."""
    cut = len(text)
    for marker in MARKERS:
        idx = text.find(marker)
        if idx != -1:
            cut = min(cut, idx)
    return text[:cut]


def extract_chat(raw: str, *, empty_ok: bool = False) -> Extraction:
    closed = _CLOSED_TAG.findall(raw)
    if closed:
        return Extraction(unwrap_fence(_strip_one_newline(closed[-1])), "closed_tag")
    open_at = raw.rfind(OPEN_TAG)
    if open_at != -1:
        body = _strip_one_newline(raw[open_at + len(OPEN_TAG) :])
        if body.strip() or empty_ok:
            return Extraction(unwrap_fence(body), "open_tag")
        return Extraction(None, "none")
    fenced = last_fenced_block(raw)
    if fenced is not None:
        return Extraction(fenced, "fence")
    return Extraction(None, "none")


def extract_completion(raw: str, *, empty_ok: bool = False) -> Extraction:
    """`empty_ok`: an empty answer is an answer (an answer format where it means no change)."""
    method = "completion"
    text = raw
    if f"{NEXT}\n" in text:  # the model echoed the prompt: the answer follows its last marker line
        text = text[text.rindex(f"{NEXT}\n") + len(NEXT) + 1 :]
        method = "marker"
    text = _cut_at_markers(text)
    if OPEN_TAG in text:  # a base model that answers in the chat format anyway
        chat = extract_chat(text)
        if chat.ok:
            return chat
    text = strip_template_newline(text)
    if not text.strip() and not empty_ok:
        return Extraction(None, "none")
    return Extraction(unwrap_fence(text), method)


def extract_next_version(raw: str, style: Style = "completion") -> Extraction:
    """The next version in a raw model output; see the module docstring for the rules."""
    if style == "chat":
        return extract_chat(raw)
    if style == "completion":
        return extract_completion(raw)
    if style == "direct":
        return Extraction(raw, "direct")
    raise ValueError(f"unknown output style {style!r} (expected 'completion', 'chat' or 'direct')")


def extract_body(raw: str, style: Style) -> Extraction:
    """The answer in a raw output, whatever its answer format (nep.core.formats): read as
    `extract_next_version` reads it, except that an empty answer is kept (it may mean "no change")."""
    if style == "chat":
        return extract_chat(raw, empty_ok=True)
    if style == "completion":
        return extract_completion(raw, empty_ok=True)
    return extract_next_version(raw, style)


# ---------------------------------------------------------------- a diff is not a file

_HUNK = re.compile(r"^@@ -\d+(?:,\d+)? \+\d+(?:,\d+)? @@")


def is_unified_diff(text: str) -> bool:
    """Whether `text` is a unified diff rather than a file: its first non-blank line opens one
    (`--- a` followed by `+++ b`, `diff --git`, or a hunk header `@@ -1,2 +1,3 @@`). Models
    imitating the prompt's `<|edits_diff|>` section answer that way."""
    lines = [line for line in text.split("\n") if line.strip()][:2]
    if not lines:
        return False
    first = lines[0]
    if first.startswith("diff --git ") or _HUNK.match(first):
        return True
    return first.startswith("--- ") and len(lines) > 1 and lines[1].startswith("+++ ")


def extract_answer(raw: str, style: Style = "completion", *, current: str | None = None) -> Extraction:
    """`extract_next_version`, except that a model's answer which is a unified diff is not taken
    for the next version (method `diff`) unless the current version is one too (a patch file
    being edited). `direct` answers are taken as they are."""
    extraction = extract_next_version(raw, style)
    if style == "direct" or not extraction.ok or not is_unified_diff(extraction.text or ""):
        return extraction
    if current is not None and is_unified_diff(current):
        return extraction
    return Extraction(None, "diff")
