"""The answer-format interface: what the model is asked, what it is trained to write, and how its
answer becomes the full next version.

An answer format is separate from the prompt *style* (nep.core.extract.Style: how the answer is read
out of a completion, a chat reply or a direct output). Every format turns its answer back into the
whole next version, so every metric, the paper benchmark and the baselines stay comparable; an
answer that does not apply gives no next version and the reason (`Extraction.method`), which the
generation records and metrics count. Formats: nep.core.formats (the registry).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from nep.core.edits import unified_diff
from nep.core.extract import Extraction, Style, extract_body
from nep.core.prompts import build_prompt, parse_prompt, template_completion


class AnswerGrammar(Protocol):
    """Which answer prefixes decoding may write for one example (the answer: the text after the
    `<|next_version|>` line; a prefix may end inside a line, or in U+FFFD where a character's
    bytes are not all written). A refused prefix must stay refused however it goes on (decoding
    skips tokens by their first characters)."""

    def allows(self, prefix: str) -> bool: ...

    def may_end(self, prefix: str) -> bool: ...


class Unrepresentable(ValueError):
    """A next version this format cannot express (training drops the example, counted by `reason`)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True)
class Versions:
    """The versions a format works on: the example's own fields when it has them (byte for byte),
    else its prompt's sections."""

    original: str
    current: str
    path: str = ""

    @classmethod
    def of(cls, example: dict[str, Any]) -> Versions:
        original, current = example.get("original"), example.get("current")
        if not isinstance(original, str) or not isinstance(current, str):
            sections = parse_prompt(example["prompt"])
            original = original if isinstance(original, str) else sections["original"]
            current = current if isinstance(current, str) else sections["current"]
        path = example.get("path") or example.get("new_file") or ""
        return cls(original, current, path if isinstance(path, str) else "")


@dataclass(frozen=True)
class Applied:
    """An answer turned into the next version (`text`), or None and why not (`reason`)."""

    text: str | None
    reason: str = ""


class AnswerFormat:
    """One answer format. Subclasses set `name`, the chat wording and `answer`/`apply`; `shown_current`
    when the prompt marks something in the current version. `omit_original`: the prompt leaves out
    the original section (the edit history and the current version imply it); `history`: how the
    prompt shows the edit history (`history_text`)."""

    name: ClassVar[str]
    # The chat instruction's paragraph on the answer, and the user message's last line.
    chat_answer: ClassVar[str]
    chat_request: ClassVar[str]

    def __init__(self, options: Any = None):
        """`options`: the `process.format` params section (nep.config.schema.Format); None: the format with
        every prompt section (what tests and callers without params use)."""
        self.options = options
        self.omit_original = bool(getattr(options, "omit_original", False))
        self.history = str(getattr(options, "history", "diff") or "diff")

    def option_values(self) -> dict[str, Any]:
        """The `process.format` values this format was built from (`{"answer": name}` when built without
        params): what finetune records with a model and generation keys its saved answers on."""
        return self.options.model_dump() if hasattr(self.options, "model_dump") else {"answer": self.name}

    # ------------------------------------------------------------ what the model is asked
    def shown_current(self, v: Versions) -> str:
        """The current version as the prompt shows it."""
        return v.current

    def history_text(self, v: Versions) -> str:
        """The edit history as the prompt shows it (`process.format.history`): the unified diff
        original → current (the paper's), or the same changes as edit blocks (the form the
        `blocks` answer is written in)."""
        if self.history == "blocks":
            from nep.core.formats.blocks import edit_blocks

            return edit_blocks(v.original, v.current)
        return unified_diff(v.original, v.current, old_name=v.path, new_name=v.path)

    def prompt(self, example: dict[str, Any]) -> str:
        """The completion-style prompt (ends with the `<|next_version|>` line). The paper's whole
        version with every section is the example's own `prompt`, byte for byte."""
        if self.is_paper and isinstance(example.get("prompt"), str):
            return example["prompt"]
        v = Versions.of(example)
        return build_prompt(v.original, v.current, path=v.path, shown_current=self.shown_current(v),
                            include_original=not self.omit_original, history=self.history_text(v))

    @property
    def is_paper(self) -> bool:
        return self.name == "whole" and not self.omit_original and self.history == "diff"

    # ------------------------------------------------------------ what it is trained to write
    def answer(self, v: Versions, next_version: str) -> str:
        """The answer that gives `next_version` (Unrepresentable when none does)."""
        raise NotImplementedError

    def completion(self, example: dict[str, Any]) -> str:
        """The training completion: the answer plus the template newline (the example's own
        `completion` for the whole version). Checked: applying it gives the next version."""
        if self.name == "whole" and isinstance(example.get("completion"), str):
            return example["completion"]
        v = Versions.of(example)
        answer = self.answer(v, example["next"])
        applied = self.apply(answer, v)
        if applied.text != example["next"]:
            raise Unrepresentable(applied.reason or "round_trip")
        return template_completion(answer)

    # ------------------------------------------------------------ what decoding may write
    def grammar(self, v: Versions) -> AnswerGrammar | None:
        """The answers greedy decoding may write for this example when a predictor sets `constrain`
        (only answers that can still apply; nep.predictors.hf.GrammarProcessor), or None: this
        format has no grammar."""
        return None

    # ------------------------------------------------------------ how the answer becomes the next version
    def apply(self, answer: str, v: Versions) -> Applied:
        raise NotImplementedError

    def read(self, raw: str, style: Style, example: dict[str, Any]) -> Extraction:
        """The next version in a raw output: read the answer out of its wrapper (`style`), then
        apply it. `direct` outputs (baselines) are next versions already."""
        if style == "direct":
            return Extraction(raw, "direct")
        body = extract_body(raw, style)
        if body.text is None:
            return body
        applied = self.apply(body.text, Versions.of(example))
        return Extraction(applied.text, body.method if applied.text is not None else applied.reason)
