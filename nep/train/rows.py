"""Training rows: the prompt/completion pairs finetune trains on (`sft_examples`, counting what it
drops and why), how one pair becomes a token sequence with its completion mask (`training_row`,
the boundary where generation has it), and the per-token weights of
`finetune.changed_token_weight` (`changed_spans`, `changed_token_weights`). nep.train.sft builds the
trainer on them; posttrain and the benchmarks tokenize through the same functions."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nep.core.edits import common_affixes
from nep.core.formats import PAPER, AnswerFormat, Unrepresentable
from nep.core.prompts import NEXT, model_boundary, parse_prompt, strip_template_newline
from nep.util.errors import NepError


@dataclass
class ExampleStats:
    examples: int = 0
    used: int = 0
    truncated: int = 0
    prompt_merged: int = 0  # training sequences not starting with the inference prompt's tokens (training_row)
    dropped: Counter = field(default_factory=Counter)
    tokens: int = 0
    completion_tokens: int = 0


def sft_examples(
    records: Iterable[dict[str, Any]], tokenizer, max_seq_length: int, overlong: str = "truncate",
    fmt: AnswerFormat = PAPER,
) -> tuple[list[dict[str, str]], ExampleStats]:
    """The prompt/completion pairs SFTTrainer will train on, with what it will do to them counted
    (tokenized as `training_row` tokenizes them; `prompt_merged` counts training sequences that do
    not begin with the prompt's tokens as generation sees them: 0 unless that breaks). Dropped and counted by
    reason: no prompt/completion, a prompt not ending with the `<|next_version|>` line, a prompt
    that fills the window alone (`prompt_too_long`), and with `overlong: drop` any example longer
    than the window (`too_long`). With `truncate`, SFTTrainer cuts the completion (counted).
    Prompt and completion are in the answer format `fmt` (nep.core.formats; the paper's: the
    record's own); a next version the format cannot write is dropped (`format_<reason>`)."""
    stats = ExampleStats()
    kept: list[dict[str, str]] = []
    for r in records:
        stats.examples += 1
        prompt, completion = r.get("prompt"), r.get("completion")
        if not fmt.is_paper and isinstance(prompt, str) and isinstance(r.get("next"), str):
            try:
                prompt, completion = fmt.prompt(r), fmt.completion(r)
            except Unrepresentable as e:
                stats.dropped[f"format_{e.reason}"] += 1
                continue
        if not isinstance(prompt, str) or not isinstance(completion, str):
            stats.dropped["missing_prompt_or_completion"] += 1
            continue
        if not prompt.endswith(f"{NEXT}\n"):
            stats.dropped["prompt_without_next_marker"] += 1
            continue
        prompt_ids = tokenizer(model_boundary(prompt)[0])["input_ids"]  # as generation tokenizes it
        full_ids = training_row(tokenizer, prompt, completion)["input_ids"]
        prefix = common_affixes(prompt_ids, full_ids)[0]
        if prefix >= max_seq_length:
            stats.dropped["prompt_too_long"] += 1
            continue
        if len(full_ids) > max_seq_length:
            if overlong == "drop":
                stats.dropped["too_long"] += 1
                continue
            stats.truncated += 1
        stats.used += 1
        stats.prompt_merged += prefix < len(prompt_ids)
        stats.tokens += min(len(full_ids), max_seq_length)
        stats.completion_tokens += min(len(full_ids), max_seq_length) - prefix
        kept.append({"prompt": prompt, "completion": completion, "current": _current(r, prompt)})
    return kept, stats


def _current(record: dict[str, Any], prompt: str) -> str:
    """The example's current version: its `current` field, else the prompt's current section."""
    current = record.get("current")
    if isinstance(current, str):
        return current
    try:
        return parse_prompt(prompt)["current"]
    except ValueError:
        return ""


def training_row(tokenizer, prompt: str, completion: str) -> dict[str, list[int]]:
    """One training sequence: the prompt up to `<|next_version|>` tokenized alone exactly as
    generation tokenizes it (special tokens on), then the marker's newline and the completion
    tokenized together on their own, then the EOS id; `completion_mask` marks that second part and
    EOS (the loss). The boundary sits where inference has it, and the answer's first line is
    tokenized as the prompt's sections are, newline and indentation merged
    (nep.core.prompts.model_boundary)."""
    head, lead = model_boundary(prompt)
    prompt_ids = tokenizer(head)["input_ids"]
    completion_ids = tokenizer(lead + completion, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return {
        "input_ids": prompt_ids + completion_ids,
        "completion_mask": [0] * len(prompt_ids) + [1] * len(completion_ids),
    }




def changed_spans(current: str, answer: str) -> list[tuple[int, int]]:
    """Character ranges of `answer` on lines it does not copy from `current`: the lines a line diff
    (difflib, no autojunk) shows as inserted or replaced. A deleted line leaves nothing to mark."""
    import difflib

    a, b = current.splitlines(keepends=True), answer.splitlines(keepends=True)
    starts = [0]
    for line in b:
        starts.append(starts[-1] + len(line))
    return [(starts[j1], starts[j2]) for tag, _, _, j1, j2 in
            difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes() if tag in ("insert", "replace") and j2 > j1]


def changed_token_weights(tokenizer, prompt: str, completion: str, current: str, weight: float) -> list[float]:
    """Per token of `training_row(tokenizer, prompt, completion)`: `weight` for a completion token
    that overlaps a changed span of the completion (`changed_spans` against the current version),
    1.0 for the other completion tokens, the template's final newline and EOS, 0.0 for the prompt (masked anyway). The
    completion's tokens are re-read with their character offsets (a fast tokenizer's); NepError
    when they differ from the training row's."""
    row = training_row(tokenizer, prompt, completion)
    n_prompt = len(row["input_ids"]) - sum(row["completion_mask"])
    lead = model_boundary(prompt)[1]
    enc = tokenizer(lead + completion, add_special_tokens=False, return_offsets_mapping=True)
    if enc["input_ids"] != row["input_ids"][n_prompt:-1]:
        raise NepError("finetune.changed_token_weight: the tokenizer's offsets do not match the training row's tokens")
    answer = strip_template_newline(completion)  # a prefix: the template's newline is format, like EOS
    spans = [(start + len(lead), end + len(lead)) for start, end in changed_spans(current, answer)]
    weights = [0.0] * n_prompt
    for start, end in enc["offset_mapping"]:
        changed = any(s < end and start < e for s, e in spans) if end > start else False
        weights.append(weight if changed else 1.0)
    return weights + [1.0]  # EOS
