"""The predictor interface: what a predictor is handed, what it answers, and its settings.

A predictor is handed the whole test set (and the indices still to do) and streams its answers
back in groups; nep.predictors.runner saves each group as it arrives, so a killed run loses at most the
group in flight. Each kind batches the way its backend wants. Kinds and the check of a params
entry: nep.predictors.kinds; prompts: nep.predictors.prompts; the non-learned baselines:
nep.predictors.baselines.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from nep.core.extract import Style
from nep.core.formats import AnswerFormat, answer_format
from nep.core.prompts import parse_prompt


@dataclass
class Prediction:
    """A predictor's answer for one example. `skipped` names why there is no model answer
    (prompt_too_long, missing: final, the same inputs give the same skip); `unextracted` names why
    an answer that exists holds no next version by its producer's reading (an imported row marked
    `extracted: false`, e.g. block_not_found): scored as a miss with that reason; `error` names a failure
    a rerun may not repeat (backend_error.<reason>): never saved as an answer, counted against the
    predictor's `max_failure_rate`; `raw_output` is "" for both. `style`
    overrides the predictor's output style for this answer; `tags` are deterministic facts for
    the metrics (e.g. {"propagate_rule": "insert"}). `logprob`: the answer's confidence where the
    engine gives log-probabilities (the mean log-probability of its generated tokens, rounded to
    LOGPROB_DIGITS so reruns on one machine agree), kept in the record. Measured, for the timing
    report only (nep.predictors.latency): `latency_s` (request to answer in hand: a batched
    engine's whole call), `ttft_s` (to the first token, where the engine shows it), `batch` (the
    answers that shared the call)."""

    raw_output: str
    output_tokens: int = 0
    skipped: str | None = None
    unextracted: str | None = None
    error: str | None = None
    style: Style | None = None
    tags: dict[str, str] = field(default_factory=dict)
    latency_s: float = 0.0
    ttft_s: float | None = None
    batch: int = 1
    logprob: float | None = None


@dataclass(frozen=True)
class Settings:
    """What every predictor sees: the `generate:` params (their meaning and defaults live in
    nep.config.schema.Generate, nowhere else) and the answer format (`process.format`). Build it from the
    params with `Settings.of`."""

    max_new_tokens: int
    batch_size: int
    threads: int  # CPU threads for torch (0: nep.util.device.auto_threads())
    max_growth_tokens: int  # > 0: an answer stops this many tokens beyond its current version's length
    prompt_lookup_tokens: int  # > 0: hf/finetuned draft from the prompt, one row at a time (nep.predictors.hf)
    answer_format: AnswerFormat

    @classmethod
    def of(cls, generate: Any = None, fmt: Any = None, **overrides: Any) -> Settings:
        """Settings from the `generate:` section (nep.config.schema.Generate; its defaults when None)
        with `overrides` of its fields, and the `process.format` section (Format, or an AnswerFormat;
        the default when None)."""
        from nep.config.schema import Format, Generate

        gen = (generate or Generate()).model_copy(update=overrides) if overrides else (generate or Generate())
        if not isinstance(fmt, AnswerFormat):
            fmt = answer_format(fmt if fmt is not None else Format())
        return cls(gen.max_new_tokens, gen.batch_size, gen.threads, gen.max_growth_tokens, gen.prompt_lookup_tokens,
                   fmt)


def current_version(example: dict[str, Any]) -> str | None:
    """The version the model sees last: its prompt's current section, else (a prompt without nep's
    markers, e.g. an imported test set) the example's `current` field, else None."""
    try:
        return parse_prompt(example["prompt"])["current"]
    except (KeyError, ValueError):
        current = example.get("current")
        return current if isinstance(current, str) else None


def token_budgets(examples: Sequence[dict[str, Any]], count_tokens, max_new_tokens: int, growth: int) -> list[int]:
    """Each example's token budget: `max_new_tokens`, or with `growth` > 0 at most the current
    version's length in tokens (`count_tokens`) plus `growth` (generate.max_growth_tokens); an
    example whose current version is unknown keeps `max_new_tokens`."""
    budgets = []
    for ex in examples:
        current = current_version(ex) if growth > 0 else None
        budgets.append(max_new_tokens if current is None else min(max_new_tokens, count_tokens(current) + growth))
    return budgets


LOGPROB_DIGITS = 4  # a confidence's decimals: float noise below this never changes a rerun's bytes


def mean_logprob(values: Sequence[float]) -> float | None:
    """The confidence of an answer from its tokens' log-probabilities (None for no tokens)."""
    return round(sum(values) / len(values), LOGPROB_DIGITS) if values else None


Group = list[tuple[int, Prediction]]  # (index into the test set, its prediction)


class Predictor:
    """Base class. `predict` yields groups of (test-set index, Prediction) for the indices in
    `todo`, in any order, each index exactly once; `style` says how nep.core.extract reads raw outputs.
    `report` adds deterministic metrics, `timing` measured ones.

    Every kind owns a failure policy, `max_failure_rate` (a common option, default 0: strict): when
    a larger share of the test set ends in a Prediction with `error`, the run fails and writes
    nothing (nep.predictors.runner)."""

    kind: ClassVar[str]
    style: Style = "completion"
    required: ClassVar[tuple[str, ...]] = ()  # options that must be given (non-empty)
    name: str = ""  # the params entry, set by build_predictor; named in errors
    max_failure_rate: float = 0.0  # set from the entry by build_predictor
    # Set by the runner: a predictor that answers in groups may call it with the share of an
    # example done while a group is in flight (a row finished, decoding steps); optional.
    progress = None

    def predict(self, examples: Sequence[dict[str, Any]], todo: Sequence[int], settings: Settings) -> Iterator[Group]:
        raise NotImplementedError

    def report(self) -> dict[str, Any]:
        return {}

    def timing(self) -> dict[str, Any]:
        return {}

    def reads_as(self, settings: Settings) -> AnswerFormat:
        """The answer format its outputs are read in: the run's (`process.format`), unless the kind's
        answers are next versions whatever the run asks (imported generations)."""
        return settings.answer_format

    def runs_on(self, settings: Settings) -> dict[str, Any]:
        """Where the answers were computed, for the timing row: `device`, `machine` (in words,
        nep.util.machine) and `batch_size` (answers per call). The base: one at a time, here."""
        from nep.util.machine import describe

        return {"device": "cpu", "machine": describe("cpu", 1), "batch_size": 1}

    def param(self, key: str) -> str:
        return f"generate.predictors.{self.name or '<name>'}.{key}"

    @classmethod
    def options(cls) -> dict[str, Any]:
        """Option name → type hint, for the check of a params entry."""
        hints = typing.get_type_hints(cls)
        return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.init} if dataclasses.is_dataclass(cls) else {}

    @classmethod
    def check_options(cls, options: dict[str, Any]) -> tuple[str, str] | None:
        """(option, problem) for a combination of options this kind rejects, else None."""
        for key in cls.required:
            if not options.get(key):
                return key, f"required for kind {cls.kind!r}"
        return None


def by_length(examples: Sequence[dict[str, Any]], todo: Sequence[int], batch_size: int) -> Iterator[list[int]]:
    """`todo` sorted by prompt length (ties by index) in groups of `batch_size`, so a batch needs
    little padding."""
    if batch_size < 1:
        raise ValueError(f"generate.batch_size must be ≥ 1, got {batch_size}")
    order = sorted(todo, key=lambda i: (len(examples[i]["prompt"]), i))
    for start in range(0, len(order), batch_size):
        yield order[start : start + batch_size]
