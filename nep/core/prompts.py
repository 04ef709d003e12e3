"""The training text: the paper's four markers, in order, and the prompt/completion split."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from nep.core.edits import unified_diff

ORIGINAL = "<|original_code|>"
EDITS_DIFF = "<|edits_diff|>"
CURRENT = "<|current_version|>"
NEXT = "<|next_version|>"
MARKERS: tuple[str, ...] = (ORIGINAL, EDITS_DIFF, CURRENT, NEXT)


def _section(marker: str, body: str) -> str:
    # Each body ends with a newline so the next marker starts on its own line.
    if body and not body.endswith("\n"):
        body += "\n"
    return f"{marker}\n{body}"


@dataclass(frozen=True)
class TrainingText:
    prompt: str  # everything up to and including the <|next_version|> line
    completion: str  # the next version

    @property
    def text(self) -> str:
        return self.prompt + self.completion


def build_prompt(original: str, current: str, *, path: str = "") -> str:
    """The prompt: original code, the diff original → current, the current version, then the
    `<|next_version|>` line after which the model writes the next version."""
    diff = unified_diff(original, current, old_name=path, new_name=path)
    return (
        _section(ORIGINAL, original)
        + _section(EDITS_DIFF, diff)
        + _section(CURRENT, current)
        + f"{NEXT}\n"
    )


def build_training_text(original: str, current: str, new: str, *, path: str = "") -> TrainingText:
    return TrainingText(build_prompt(original, current, path=path), new)


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
