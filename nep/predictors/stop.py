"""Why a generated answer ended, and the guard that ends a loop.

Greedy decoding (the paper's) from a small or undertrained model often falls into a loop
(`#\\n#\\n#\\n…`, one comment line over and over) and runs to `max_new_tokens`. The guard stops
such an answer once its last lines are one block of 1–`MAX_PERIOD` lines repeated in a row:
`repeats` times for a single line, and for a longer block of p lines ceil(`repeats` / p) times but
at least `MIN_COPIES` (8 copies of one line, 4 of two lines, 3 of three or more), unless the prompt
itself holds that run (a file that really repeats a line or a block). It
never changes which token is chosen: an answer it stops is a prefix of the unguarded one.

Every answer of the transformers predictors is tagged `stop`: `eos` (the model ended it),
`repeated_lines` (the guard), `max_new_tokens` (cut at the limit), `growth_limit` (cut once it grew
`generate.max_growth_tokens` beyond the current version's length); the generate stage counts the
tags (`stop.<reason>` in metrics/generate/<predictor>.json) and the cut ones (`cut`: the last two).
"""

from __future__ import annotations

from collections.abc import Sequence

from nep.core.prompts import strip_lead

MAX_PERIOD = 16  # longest repeated block, in lines
MIN_COPIES = 3  # a block of several lines counts as a loop from this many copies on
EOS, REPEATED, LENGTH, GROWTH = "eos", "repeated_lines", "max_new_tokens", "growth_limit"
CUT = (LENGTH, GROWTH)  # answers that ended at a token limit, not where the model ended them
# Answers the model did not finish: no next version (nep.predictors.runner.make_record). A cut or
# looping answer is a prefix of a file; scored as a file it would "delete" every line it never reached.
INCOMPLETE = (*CUT, REPEATED)


def copies_needed(period: int, repeats: int) -> int:
    """How many copies in a row of a block of `period` lines make a loop (see the module docstring)."""
    return repeats if period == 1 else max(min(MIN_COPIES, repeats), -(-repeats // period))


def repeated_tail(text: str, repeats: int, *, max_period: int = MAX_PERIOD) -> str | None:
    """The run (`copies_needed` copies of a block of 1–`max_period` complete lines, newline-joined)
    that `text`'s complete lines end with, or None. The line being written is not counted."""
    if repeats < 2:
        return None
    lines = text.split("\n")[:-1]  # complete lines only
    for period in range(1, max_period + 1):
        n = period * copies_needed(period, repeats)
        if len(lines) < n:
            break
        tail = lines[-n:]
        if all(tail[i] == tail[i - period] for i in range(period, n)):
            return "\n".join(tail) + "\n"
    return None


def loops(text: str, prompt: str, repeats: int) -> bool:
    """Whether `text` ends in a run of repeated lines that `prompt` does not hold."""
    run = repeated_tail(text, repeats)
    return run is not None and run not in prompt


class RepeatedLinesStop:
    """A transformers stopping criterion, per row of a batch: stop a row once its generated text
    `loops` (see above). `prompts` are the batch's prompt texts, `start` the padded prompt
    width, `leads` what each row's tokens begin with before the answer
    (nep.core.prompts.model_boundary); `stopped[row]` records how many new tokens the row had when
    it was stopped."""

    def __init__(self, tokenizer, prompts: Sequence[str], start: int, repeats: int, leads: Sequence[str] | None = None):
        self.tokenizer, self.prompts, self.start, self.repeats = tokenizer, list(prompts), start, repeats
        self.leads = list(leads) if leads is not None else [""] * len(self.prompts)  # text before the answer
        self.stopped: dict[int, int] = {}
        self._lines = [0] * len(self.prompts)  # newline count last seen per row: check only on a new line

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        if self.repeats < 2:
            return done
        for row in range(input_ids.shape[0]):
            if row in self.stopped:
                done[row] = True
                continue
            text = self.tokenizer.decode(input_ids[row, self.start :], skip_special_tokens=False)
            text = strip_lead(text, self.leads[row])
            lines = text.count("\n")
            if lines == self._lines[row]:
                continue
            self._lines[row] = lines
            if loops(text, self.prompts[row], self.repeats):
                self.stopped[row] = input_ids.shape[1] - self.start
                done[row] = True
        return done


def replay_loop_stop(tokenizer, tokens: Sequence[int], prompt: str, lead: str, repeats: int) -> int | None:
    """How many of `tokens` (one row's new tokens) `RepeatedLinesStop` would have let through had it
    seen them one decoding step at a time, or None if it would not have stopped the row. A decoder
    that appends several tokens per step (speculative decoding) calls the guard less often: this
    finds the step-by-step stop, so the answer is the same prefix."""
    if repeats < 2:
        return None
    lines = 0
    for n in range(1, len(tokens) + 1):
        text = strip_lead(tokenizer.decode(tokens[:n], skip_special_tokens=False), lead)
        count = text.count("\n")
        if count == lines:
            continue
        lines = count
        if loops(text, prompt, repeats):
            return n
    return None


class RowBudgetStop:
    """A transformers stopping criterion: stop row `r` once it has `budgets[r]` new tokens (rows of
    one batch may have different budgets; the batch runs to the largest). `start` is the padded
    prompt width."""

    def __init__(self, budgets: Sequence[int], start: int):
        self.budgets, self.start = list(budgets), start

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        made = input_ids.shape[1] - self.start
        return torch.tensor([made >= b for b in self.budgets], dtype=torch.bool, device=input_ids.device)
