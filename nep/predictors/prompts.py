"""What a model predictor is asked: the chat prompt for instruct models and the completion-style
prompt for base and fine-tuned ones, in the run's answer format (nep.core.formats)."""

from __future__ import annotations

from typing import Any

from nep.core.formats import PAPER, AnswerFormat, Versions
from nep.core.prompts import paper_prompt, parse_prompt

TASK = """\
You predict a programmer's next code edit. You are given a source file as it originally was, \
the edits the programmer has made to it so far (a unified diff from the original to the current \
version), and the file as it is now. Work out what the programmer is doing and make the one next \
edit that continues it: typically the same kind of change at the next place it is needed, or the \
step that naturally follows. Leave everything else exactly as it is."""
# the same without the original version (process.format.omit_original)
TASK_NO_ORIGINAL = """\
You predict a programmer's next code edit. You are given the edits the programmer has made to a \
source file so far (a unified diff from the original to the current version) and the file as it \
is now. Work out what the programmer is doing and make the one next edit that continues it: \
typically the same kind of change at the next place it is needed, or the step that naturally \
follows. Leave everything else exactly as it is."""


DIFF_WORDS = "(a unified diff from the original to the current version)"
# the same history as edit blocks (process.format.history: blocks)
BLOCKS_WORDS = ("(as edit blocks: a line <<<<<<< ORIGINAL, lines as they were, a line =======, the lines that "
                "replaced them, a line >>>>>>> UPDATED)")


def system_instruction(fmt: AnswerFormat = PAPER) -> str:
    """nep's system instruction for instruct models: the task, then what to answer (the format's)."""
    task = TASK_NO_ORIGINAL if fmt.omit_original else TASK
    if fmt.history == "blocks":
        task = task.replace(DIFF_WORDS, BLOCKS_WORDS)
    return f"{task}\n\n{fmt.chat_answer}"


SYSTEM_INSTRUCTION = system_instruction()  # the paper's whole next version


def chat_messages(
    example: dict[str, Any], system: str | None = None, *, system_role: bool = True, fmt: AnswerFormat = PAPER
) -> list[dict[str, str]]:
    """The chat prompt for instruct models: our system instruction (`system`; None: the answer
    format's, `system_instruction`), then the example's original version, edit history and current
    version (the example's own versions, byte for byte, so a closing tag right after a file without
    a final newline shows it; else the training prompt's sections) as the answer format shows them
    (the original left out with `omit_original`, a region marked), and the format's request.
    Without `system_role` (chat templates that reject one, e.g. CodeGemma's), the instruction opens
    the user message instead, as the paper does for CodeGemma."""
    system = system_instruction(fmt) if system is None else system
    sections = parse_prompt(example["prompt"])
    v = Versions.of(example)
    path = example.get("path") or example.get("new_file") or "(unnamed file)"
    original = "" if fmt.omit_original else f"<original_code>\n{v.original}</original_code>\n\n"
    user = (
        f"File: {path}\n\n"
        f"{original}"
        f"<edits_diff>\n{sections['diff'] if fmt.history == 'diff' else fmt.history_text(v)}</edits_diff>\n\n"
        f"<current_version>\n{fmt.shown_current(v)}</current_version>\n\n"
        f"{fmt.chat_request}"
    )
    if not system_role:
        return [{"role": "user", "content": f"{system}\n{user}"}]
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def training_prompt(example: dict[str, Any], template: str = "nep", fmt: AnswerFormat = PAPER) -> str:
    """The completion-style prompt of an example: nep's in the answer format (`fmt.prompt`: the
    example's own `prompt` for the paper's whole version), or with template "paper" the paper's own
    (nep.core.prompts.paper_prompt, what its released "-NEP" models were trained on; whole only)."""
    if template == "nep":
        return fmt.prompt(example)
    if template != "paper":
        raise ValueError(f"unknown template {template!r} (expected 'nep' or 'paper')")

    sections = parse_prompt(example["prompt"])
    original, current = example.get("original"), example.get("current")
    path = example.get("path") or ""
    return paper_prompt(
        original if isinstance(original, str) else sections["original"],
        current if isinstance(current, str) else sections["current"],
        old_file=example.get("old_file") or path, new_file=example.get("new_file") or path,
    )
