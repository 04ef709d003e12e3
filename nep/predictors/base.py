"""Next-edit predictors: one interface, a registry of kinds, and the check of a params entry.

A predictor is handed the whole test set (and the indices still to do) and streams its answers
back in groups; nep.predictors.runner saves each group as it arrives, so a killed run loses at most the
group in flight. Each kind batches the way its backend wants. Kinds (`generate.predictors.<name>.kind`;
options are the dataclass fields of each class):

- ``identity``: the current version unchanged (a floor).
- ``propagate``: repeats the most recent edit at the next place it applies (nep.predictors.propagate).
- ``finetuned`` / ``hf``: transformers, greedy, `batch_size` prompts of similar length at a time
  (nep.predictors.hf).
- ``vllm``: the offline vLLM engine, every remaining prompt at once (nep.predictors.vllm).
- ``openai``: an OpenAI-compatible endpoint, `concurrency` requests in flight (nep.predictors.openai).
- ``file``: generations made elsewhere, read from a JSONL file and matched to the test set
  (nep.predictors.file).

Classes load lazily through nep.util.registry: importing this module, or checking an entry with
`check_predictor`, imports no heavy library.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import time
import typing
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from nep.core.extract import Style
from nep.core.prompts import paper_prompt, parse_prompt
from nep.predictors.propagate import propagate
from nep.util.registry import Registry

KINDS: dict[str, str] = {
    "finetuned": "nep.predictors.hf:FinetunedPredictor",
    "hf": "nep.predictors.hf:HFPredictor",
    "vllm": "nep.predictors.vllm:VLLMPredictor",
    "openai": "nep.predictors.openai:OpenAIPredictor",
    "file": "nep.predictors.file:FilePredictor",
    "identity": "nep.predictors.base:IdentityPredictor",
    "propagate": "nep.predictors.base:PropagatePredictor",
}
# Keys of a predictor's params entry that are not options of its class.
RESERVED_KEYS = ("kind", "needs")
# Options every kind takes (the base class's policy), with their types.
COMMON_OPTIONS: dict[str, Any] = {"max_failure_rate": float}

SYSTEM_INSTRUCTION = """\
You predict a programmer's next code edit. You are given a source file as it originally was, \
the edits the programmer has made to it so far (a unified diff from the original to the current \
version), and the file as it is now. Work out what the programmer is doing and make the one next \
edit that continues it: typically the same kind of change at the next place it is needed, or the \
step that naturally follows. Leave everything else exactly as it is.

Answer with the complete file after that edit, every line of it, between <next_version> and \
</next_version> tags. Put nothing else between the tags: no explanations, no line numbers, no code \
fence. Anything outside the tags is ignored."""



def chat_messages(
    example: dict[str, Any], system: str = SYSTEM_INSTRUCTION, *, system_role: bool = True
) -> list[dict[str, str]]:
    """The chat prompt for instruct models: our system instruction, then the example's original
    version, edit history and current version (the example's own versions, byte for byte, so a
    closing tag right after a file without a final newline shows it; else the training prompt's
    sections). Without `system_role` (chat templates that reject one, e.g. CodeGemma's), the
    instruction opens the user message instead, as the paper does for CodeGemma."""
    sections = parse_prompt(example["prompt"])
    original, current = example.get("original"), example.get("current")
    original = original if isinstance(original, str) else sections["original"]
    current = current if isinstance(current, str) else sections["current"]
    path = example.get("path") or example.get("new_file") or "(unnamed file)"
    user = (
        f"File: {path}\n\n"
        f"<original_code>\n{original}</original_code>\n\n"
        f"<edits_diff>\n{sections['diff']}</edits_diff>\n\n"
        f"<current_version>\n{current}</current_version>\n\n"
        "Write the complete next version of the file inside <next_version> tags."
    )
    if not system_role:
        return [{"role": "user", "content": f"{system}\n{user}"}]
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


def training_prompt(example: dict[str, Any], template: str = "nep") -> str:
    """The completion-style prompt of an example: nep's (`prompt`), or with template "paper" the
    paper's own (nep.core.prompts.paper_prompt, what its released "-NEP" models were trained on)."""
    if template == "nep":
        return example["prompt"]
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


@dataclass
class Prediction:
    """A predictor's answer for one example. `skipped` names why there is no model answer
    (prompt_too_long, missing: final, the same inputs give the same skip); `error` names a failure
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
    error: str | None = None
    style: Style | None = None
    tags: dict[str, str] = field(default_factory=dict)
    latency_s: float = 0.0
    ttft_s: float | None = None
    batch: int = 1
    logprob: float | None = None


@dataclass(frozen=True)
class Settings:
    """The `generate:` params every predictor sees."""

    max_new_tokens: int
    batch_size: int = 8
    threads: int = 0  # CPU threads for torch (0: nep.util.device.auto_threads())
    max_growth_tokens: int = 0  # > 0: an answer stops this many tokens beyond its current version's length
    prompt_lookup_tokens: int = 0  # > 0: hf/finetuned draft from the prompt, one row at a time (nep.predictors.hf)


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


# ---------------------------------------------------------------------------------------------
# Non-learned baselines


class OneByOne(Predictor):
    """A cheap predictor answering each example on its own (`predict_one`), in groups of
    `batch_size` so progress is saved as it goes."""

    def predict_one(self, example: dict[str, Any]) -> Prediction:
        raise NotImplementedError

    def predict(self, examples, todo, settings):
        for idx in by_length(examples, todo, settings.batch_size):
            group = []
            for i in idx:
                start = time.perf_counter()
                prediction = self.predict_one(examples[i])
                prediction.latency_s = time.perf_counter() - start
                group.append((i, prediction))
            yield group


@dataclass
class IdentityPredictor(OneByOne):
    kind: ClassVar[str] = "identity"
    style: ClassVar[Style] = "direct"

    def predict_one(self, example):
        return Prediction(parse_prompt(example["prompt"])["current"])


@dataclass
class PropagatePredictor(OneByOne):
    kind: ClassVar[str] = "propagate"
    style: ClassVar[Style] = "direct"

    def predict_one(self, example):
        sections = parse_prompt(example["prompt"])
        result = propagate(sections["original"], sections["current"])
        return Prediction(result.text, tags={"propagate_rule": result.rule})


# ---------------------------------------------------------------------------------------------
# Registry and the check of a params entry


def registry(name: str = "<name>") -> Registry:
    return Registry(f"generate.predictors.{name}.kind", KINDS)


def _type_name(hint: Any) -> str:
    name = hint.__name__ if isinstance(hint, type) else str(hint).replace("typing.", "")
    return name.replace("None", "null")


def check_predictor(name: str, entry: dict[str, Any]) -> None:
    """ValueError with one line naming `generate.predictors.<name>.<key>` when the params entry has
    no or an unknown kind (with a did-you-mean), no `needs` path (dvc.yaml's deps use it), an
    unknown option, a value of the wrong type, or a missing required option. Imports no heavy
    library."""
    _check(name, entry)
    if not entry.get("needs"):
        raise ValueError(f"generate.predictors.{name}.needs: missing (the one path this predictor depends on: "
                         "its model directory or file, else data/split/test.jsonl)")


def _check(name: str, entry: dict[str, Any]) -> None:
    from pydantic import TypeAdapter, ValidationError

    where = f"generate.predictors.{name}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: expected a mapping with a `kind`, got {entry!r}")
    kinds = registry(name)
    if "kind" not in entry:
        raise ValueError(f"{where}.kind: missing (choose one of {', '.join(kinds.names())})")
    kinds.check(entry["kind"])
    cls = kinds.get(entry["kind"])
    known = {**cls.options(), **COMMON_OPTIONS}
    if "needs" in entry and not isinstance(entry["needs"], str):
        raise ValueError(f"{where}.needs: expected a path (str), got {entry['needs']!r}")
    options = {k: v for k, v in entry.items() if k not in RESERVED_KEYS}
    for key, value in options.items():
        if key not in known:
            close = difflib.get_close_matches(str(key), list(known), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            allowed = ", ".join(sorted(known)) or "none"
            raise ValueError(f"{where}.{key}: unknown option for kind {entry['kind']!r} (known: {allowed}){hint}")
        try:
            TypeAdapter(known[key]).validate_python(value, strict=True)
        except ValidationError:
            raise ValueError(f"{where}.{key}: expected {_type_name(known[key])}, got {value!r}") from None
        if not _finite(value):
            raise ValueError(f"{where}.{key}: {value!r} is not a finite number")
    rate = options.get("max_failure_rate", 0.0)
    if not 0 <= rate <= 1:
        raise ValueError(f"{where}.max_failure_rate: {rate!r} is out of range (allowed: 0 to 1)")
    problem = cls.check_options({k: v for k, v in options.items() if k not in COMMON_OPTIONS})
    if problem:
        raise ValueError(f"{where}.{problem[0]}: {problem[1]}")


def _finite(value: Any) -> bool:
    """False for an inf/nan float anywhere in a value (YAML reads 1e400 as inf)."""
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(v) for v in value.values())
    if isinstance(value, list):
        return all(_finite(v) for v in value)
    return True


def build_predictor(name: str, entry: dict[str, Any]) -> Predictor:
    """The predictor `generate.predictors.<name>` describes (checked first, `needs` aside). Nothing
    is loaded until it predicts."""
    _check(name, entry)
    cls = registry(name).get(entry["kind"])
    skip = (*RESERVED_KEYS, *COMMON_OPTIONS)
    predictor = cls(**{k: v for k, v in entry.items() if k not in skip})
    predictor.name = name
    predictor.max_failure_rate = float(entry.get("max_failure_rate", 0.0))
    return predictor
