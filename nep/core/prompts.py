"""The training text: the paper's four markers, in order, and the prompt/completion split.

The completion is the next version followed by one newline, as the paper's template writes it
(`<|next_version|>\n{new_contents}\n`): a model trained on it ends every answer with that
*template newline* before EOS, whether or not the file itself ends with a newline, and
nep.core.extract removes exactly that one newline, so an answer is the file again. The prompt's
sections get a newline only where the body lacks one (nep's prompt); `paper_prompt` is the paper's
own, byte for byte (a newline after every section, its diff), for the paper's fine-tuned models.
"""

from __future__ import annotations

import difflib
import hashlib
from dataclasses import dataclass

from nep.core.edits import unified_diff

ORIGINAL = "<|original_code|>"
EDITS_DIFF = "<|edits_diff|>"
CURRENT = "<|current_version|>"
NEXT = "<|next_version|>"
MARKERS: tuple[str, ...] = (ORIGINAL, EDITS_DIFF, CURRENT, NEXT)
TEMPLATE_NEWLINE = "\n"  # what the template writes after the next version


def _section(marker: str, body: str) -> str:
    # Each body ends with a newline so the next marker starts on its own line.
    if body and not body.endswith("\n"):
        body += "\n"
    return f"{marker}\n{body}"


@dataclass(frozen=True)
class TrainingText:
    prompt: str  # everything up to and including the <|next_version|> line
    completion: str  # the next version + the template newline

    @property
    def text(self) -> str:
        return self.prompt + self.completion


def build_prompt(
    original: str, current: str, *, path: str = "", shown_current: str | None = None, include_original: bool = True,
    history: str | None = None,
) -> str:
    """The prompt: original code, the diff original → current, the current version, then the
    `<|next_version|>` line after which the model writes the next version. `shown_current`: the
    current version as an answer format shows it (marked, nep.core.formats); `include_original`
    false leaves the original section out (the diff and the current version imply it); `history`:
    the edit history as a format shows it (None: the unified diff)."""
    diff = unified_diff(original, current, old_name=path, new_name=path) if history is None else history
    return (
        (_section(ORIGINAL, original) if include_original else "")
        + _section(EDITS_DIFF, diff)
        + _section(CURRENT, current if shown_current is None else shown_current)
        + f"{NEXT}\n"
    )


def template_completion(next_version: str) -> str:
    """The completion the template trains on: the next version, then the template newline."""
    return next_version + TEMPLATE_NEWLINE


def strip_template_newline(answer: str) -> str:
    """A template-trained model's answer without the template newline (exactly one trailing "\\n";
    an answer without it, e.g. cut at the token limit, is left as it is)."""
    return answer[: -len(TEMPLATE_NEWLINE)] if answer.endswith(TEMPLATE_NEWLINE) else answer


ANSWER_LEAD = "\n"  # the newline after <|next_version|>, on the model's side of the boundary


def model_boundary(prompt: str) -> tuple[str, str]:
    """Where the model's tokens begin: (what the model is given, what its tokens start with).

    For a prompt ending with the `<|next_version|>` line, the marker is given without its newline
    and the newline (`ANSWER_LEAD`) opens the answer's tokens. The prompt text is unchanged (the
    two parts join to prompt + answer); only the token boundary moves. Byte-level BPEs (SmolLM2,
    Qwen) merge a newline with the indentation after it, so every prompt section starts with a
    "newline + indentation" token; an answer tokenized from its first indented line on would start
    with a bare-indentation token the prompt never shows, and a small model then guesses the first
    line's indentation (SmolLM2-135M got 25 of 108 wrong, docs/real-model.md). With the newline on
    the answer's side, the answer starts with the same tokens as the current section. Any other
    prompt (a chat template, an imported one) is left whole: (prompt, "")."""
    if prompt.endswith(NEXT + ANSWER_LEAD):
        return prompt[: -len(ANSWER_LEAD)], ANSWER_LEAD
    return prompt, ""


def strip_lead(text: str, lead: str) -> str:
    """A generated text without the `lead` its tokens began with (`model_boundary`); a text that
    does not start with it (a model that skipped the newline) is kept whole."""
    return text[len(lead):] if lead and text.startswith(lead) else text


def build_training_text(original: str, current: str, new: str, *, path: str = "") -> TrainingText:
    return TrainingText(build_prompt(original, current, path=path), template_completion(new))


def paper_prompt(original: str, current: str, *, old_file: str, new_file: str) -> str:
    """The paper's prompt (its `text` up to and including the `<|next_version|>` line): each section
    followed by a newline, and the diff as difflib's unified diff of the `splitlines()` of both
    versions, no line terminators, joined by newlines, headed by the two file names."""
    diff = "\n".join(difflib.unified_diff(original.splitlines(), current.splitlines(), lineterm="",
                                          fromfile=old_file, tofile=new_file))
    return f"{ORIGINAL}\n{original}\n{EDITS_DIFF}\n{diff}\n{CURRENT}\n{current}\n{NEXT}\n"


def parse_prompt(prompt: str) -> dict[str, str]:
    """Inverse of `build_prompt`: the original, diff and current sections of a prompt."""
    parts: dict[str, str] = {}
    rest = prompt
    for marker, nxt in zip(MARKERS, MARKERS[1:], strict=False):
        head = f"{marker}\n"
        start = rest.index(head) + len(head)
        end = rest.index(f"{nxt}\n", start)
        parts[marker] = rest[start:end]
        rest = rest[end:]
    return {"original": parts[ORIGINAL], "diff": parts[EDITS_DIFF], "current": parts[CURRENT]}


def example_id(*fields: str) -> str:
    """A stable id from identifying fields (repository, commit, path...)."""
    return hashlib.sha1("\x1f".join(fields).encode()).hexdigest()[:16]
