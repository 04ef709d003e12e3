"""The params.yaml schema: one pydantic model per section, the one home of every default.

    nep config            # check all of params.yaml: prints OK, or one line per problem (exit 1)
    nep config --defaults # the defaults as YAML (the committed params.yaml mirrors them)

`nep.config.params.load_params(section)` validates the whole file through `validate` before any stage
does work, so an unknown key (with a did-you-mean), a wrong type or an out-of-range value stops
every stage at once with one line naming `section.key`. Each section forbids unknown keys; types
are strict (a quoted "5" is not an integer). To add a param: one field with its type, range and
default in its section's model below, and the same value (with a comment) in params.yaml.
"""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from nep.config import messages
from nep.config.base import (
    MAX_SEED,
    MAX_THREADS,
    MAX_WORKERS,
    ParamsError,
    Section,
    _default,
    _seed,
    _threads,
    _workers,
)
from nep.config.entries import predictor_problems


# ---------------------------------------------------------------- ingest
class IngestGit(Section):
    repos: list[str] = ["."]
    rev: str = ""  # "": each repository's pin, else HEAD; else every repository's revision (HEAD, a range "v1.0..HEAD")
    # A repository's own revision while rev is "", keyed by the repository as listed in repos: the
    # offline default pins this project's history, so every clone mines the same commits.
    pins: dict[str, str] = {".": "f19d35db8f82419e1a9b66f801f6b96218ee4912"}
    max_commits: int = Field(0, ge=0)
    max_file_bytes: int = Field(1_000_000, ge=1)
    # A pyenv versions directory (`~` expanded; `pyenv` = `pyenv root`/versions): a repository of
    # `repos` that does not exist yet is first built from the Python 3 standard libraries installed
    # there (nep.data.stdlib_history); "" = never.
    stdlib_root: str = ""


class IngestJsonl(Section):
    paths: list[str] = []


class IngestHf(Section):
    dataset: str = "bigcode/commitpackft"
    revision: str = "fc56fe33c030c6daa414c2b112c932b8eed085e6"
    files: str = "data/{config}/data.jsonl"
    split: str = "train"
    max_records_per_language: int = Field(0, ge=0)


class IngestPatches(Section):
    paths: list[str] = []  # `git format-patch --unified=1000000` files, or directories of *.patch files


class Ingest(Section):
    source: Literal["git", "jsonl", "hf", "patches"] = "git"
    languages: list[str] = Field(
        ["Python", "Java", "Go", "C", "C++", "JavaScript", "TypeScript"], min_length=1
    )
    git: IngestGit = _default(IngestGit)
    jsonl: IngestJsonl = _default(IngestJsonl)
    hf: IngestHf = _default(IngestHf)
    patches: IngestPatches = _default(IngestPatches)
    workers: int = _workers()


# ---------------------------------------------------------------- filter
class Filter(Section):
    max_chars: int = Field(32768, ge=0)
    max_tokens: int = Field(8192, ge=0)
    encoding: str = "o200k_base"
    min_chunks: int = Field(2, ge=1)
    max_chunk_lines: int = Field(5, ge=0)  # 0 disables the check (as for every limit here)
    max_window_lines: int = Field(80, ge=0)
    edit_types: list[Literal["add", "delete", "replace"]] = Field(["add", "delete", "replace"], min_length=1)
    hunk_context_lines: int = Field(3, ge=0)
    # file: a file's whole diff is one candidate example, every chunk in one window (the paper);
    # clusters: each cluster of nearby chunks is one, the file cut between clusters (nep.data.filter)
    windows: Literal["file", "clusters"] = "file"
    workers: int = _workers()


# ---------------------------------------------------------------- label / judge (LLM backends)
class Price(Section):
    input: float = Field(ge=0)
    output: float = Field(ge=0)


class LLMParams(Section):
    """Options of an OpenAI-compatible endpoint, shared by label and judge."""

    base_url: str = "https://api.openai.com/v1"
    model: str = "gpt-4o-mini"
    api_key_env: str = "OPENAI_API_KEY"
    concurrency: int = Field(16, ge=1)
    timeout_s: float = Field(60.0, gt=0)
    max_attempts: int = Field(6, ge=1)
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int = Field(5, ge=1)
    max_failure_rate: float = Field(0.01, ge=0, le=1)
    prices: dict[str, Price] = {"gpt-4o-mini": Price(input=0.15, output=0.60)}


class Label(LLMParams):
    backend: Literal["all", "heuristic", "openai"] = "heuristic"


class Judge(LLMParams):
    backend: Literal["rules", "openai"] = "rules"
    model: str = "gpt-4.1-mini"
    timeout_s: float = Field(120.0, gt=0)
    shortcut_exact: bool = True
    prices: dict[str, Price] = {"gpt-4.1-mini": Price(input=0.40, output=1.60)}


# ---------------------------------------------------------------- process / split
class Format(Section):
    """`process.format`, the answer format (nep.core.formats): what the model is asked and trained to
    write, and how its answer becomes the next version. process counts the examples each format
    cannot write; finetune, posttrain and generate ask, train and read in it."""

    answer: str = "whole"  # whole | region | blocks (nep.core.formats.FORMATS)
    region_lines: int = Field(8, ge=0)  # region: lines each side of the edit history's last change
    omit_original: bool = False  # leave the original section out of the prompt (the diff and current imply it)
    history: Literal["diff", "blocks"] = "diff"  # the edit history: the unified diff (the paper's) | edit blocks

    @field_validator("answer")
    @classmethod
    def _known(cls, value: str) -> str:
        from nep.core.formats import registry

        registry().check(value)
        return value


class Process(Section):
    context_lines: int = Field(20, ge=0)
    format: Format = _default(Format)


class LeakageLimits(Section):
    """Per leakage kind (nep/data/leakage.py), the share of test examples above which split fails."""

    next_version: float = Field(1.0, ge=0, le=1)
    edit: float = Field(1.0, ge=0, le=1)
    window: float = Field(1.0, ge=0, le=1)


class SplitLeakage(Section):
    ngram: int = Field(5, ge=1)  # window similarity: Jaccard of token n-gram sets
    window_similarity: float = Field(0.8, gt=0, le=1)
    max_rate: LeakageLimits = _default(LeakageLimits)
    examples: int = Field(3, ge=0)  # leaking test examples of each kind shown in the log


class Split(Section):
    strategy: Literal["auto", "repo", "time", "external"] = "auto"
    test_fraction: float = Field(0.2, gt=0, lt=1)
    seed: int = _seed(42)
    external_test: str = ""
    external_train: str = ""
    external_revision: str = Field("main", min_length=1)
    # > 0: a seeded sample of this many examples of each side, taken after the split (0 = all)
    max_train: int = Field(0, ge=0)
    max_test: int = Field(0, ge=0)
    # > 0: this share of the max_train sample repeats an edit of its own history (propagate's rules
    # reproduce its next edit: nep/data/split.py); the test side is never selected this way
    repeat_share: float = Field(0.0, ge=0, le=1)
    leakage: SplitLeakage = _default(SplitLeakage)

    @model_validator(mode="after")
    def _share_of_a_sample(self) -> Split:
        """repeat_share is a share of the max_train sample: without one it would be ignored, so
        `nep config` (and every stage) refuses it before ingest runs."""
        if self.repeat_share and not self.max_train:
            raise ValueError(f"repeat_share {self.repeat_share} is a share of the training sample: "
                             "set split.max_train > 0, or split.repeat_share: 0")
        return self


# ---------------------------------------------------------------- finetune
class FinetuneTiny(Section):
    vocab_size: int = Field(2048, ge=1)
    hidden_size: int = Field(64, ge=1)
    num_layers: int = Field(2, ge=1)
    num_heads: int = Field(4, ge=1)
    max_seq_length: int = Field(4096, ge=1)
    max_steps: int = Field(6, ge=0)

    @field_validator("num_heads")
    @classmethod
    def _heads_fit(cls, heads: int, info: ValidationInfo) -> int:
        """Each head gets hidden_size / num_heads dimensions, a whole and even number (rotary
        position embeddings rotate pairs of them); nep.train.tiny picks key/value heads that divide it."""
        hidden = info.data.get("hidden_size")
        if isinstance(hidden, int) and hidden % heads:
            raise ValueError(f"{heads} does not divide finetune.tiny.hidden_size {hidden} (each head gets "
                             "hidden_size / num_heads dimensions)")
        if isinstance(hidden, int) and (hidden // heads) % 2:
            raise ValueError(f"{heads} heads of {hidden} dimensions give {hidden // heads} per head, an odd number "
                             "(rotary position embeddings need an even one)")
        return heads


TINY_MODEL = "tiny-random"  # the offline smoke model's name (nep.train.tiny)


class Finetune(Section):
    backend: Literal["auto", "unsloth", "hf"] = "auto"
    base_model: str = TINY_MODEL
    lora_r: int = Field(16, ge=1)
    lora_alpha: int = Field(16, ge=1)
    lora_dropout: float = Field(0.0, ge=0, lt=1)
    target_modules: list[str] = Field(
        ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"], min_length=1
    )
    train_embeddings: bool = True
    learning_rate: float = Field(1.0e-4, gt=0)
    embedding_learning_rate: float = Field(1.0e-5, gt=0)
    epochs: int = Field(2, ge=1)
    batch_size: int = Field(1, ge=1)
    gradient_accumulation_steps: int = Field(4, ge=1)
    max_seq_length: int = Field(2048, ge=1)
    overlong: Literal["truncate", "drop"] = "truncate"
    warmup_steps: int = Field(5, ge=0)
    weight_decay: float = Field(0.01, ge=0)
    # transformers' schedulers that run with nep's arguments (warmup and total steps; no evaluation,
    # no lr_scheduler_kwargs): a test keeps them in transformers' SchedulerType and builds each
    lr_scheduler: Literal["linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
                          "constant_with_warmup", "inverse_sqrt"] = "linear"
    max_grad_norm: float = Field(1.0, ge=0)
    # the loss weight of the answer's changed tokens (lines not copied from the current version)
    # against 1 for copied ones; 1 = every completion token alike (nep.train.sft.changed_token_weights)
    changed_token_weight: float = Field(1.0, gt=0)
    max_steps: int = Field(0, ge=0)
    seed: int = _seed(3407)
    gradient_checkpointing: bool = True
    # mixed precision: auto = bf16 (fp16 without bf16) on a GPU, fp32 on the CPU; bf16 on the CPU is
    # torch's autocast, 1.34x faster on the smollm2 preset where the CPU has bf16 instructions (docs/training.md)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    load_in_4bit: bool = False
    merge: bool = False
    threads: int = _threads()  # CPU runs: torch threads, 0 = auto (nep.util.device.configure_threads)
    tiny: FinetuneTiny = _default(FinetuneTiny)

    @property
    def is_tiny(self) -> bool:
        """Whether the base model is the offline smoke model (nep.train.tiny)."""
        return self.base_model == TINY_MODEL

    @property
    def effective_max_seq_length(self) -> int:
        return self.tiny.max_seq_length if self.is_tiny else self.max_seq_length

    @property
    def effective_max_steps(self) -> int:
        """The tighter of `max_steps` and (for tiny-random) `tiny.max_steps`; 0 = no cap."""
        caps = [c for c in (self.max_steps, self.tiny.max_steps if self.is_tiny else 0) if c > 0]
        return min(caps, default=0)


# ---------------------------------------------------------------- posttrain
class PosttrainReward(Section):
    """Weights of nep.train.rewards' reward; the last two are penalties (subtracted)."""

    exact_match: float = Field(1.0, ge=0)
    partial_match: float = Field(0.5, ge=0)
    position_match: float = Field(0.25, ge=0)
    delta_chrf: float = Field(0.5, ge=0)
    reversal: float = Field(0.5, ge=0)
    unextractable: float = Field(1.0, ge=0)


class Posttrain(Section):
    method: Literal["none", "dpo", "grpo"] = "none"
    max_prompts: int = Field(8, ge=1)
    k: int = Field(4, ge=2)  # samples per prompt (GRPO: its group size)
    temperature: float = Field(1.0, gt=0)
    top_p: float = Field(1.0, gt=0, le=1)
    max_new_tokens: int = Field(256, ge=1)
    max_seq_length: int = Field(2048, ge=2)
    seed: int = _seed(0)
    reward: PosttrainReward = _default(PosttrainReward)
    margin: float = Field(0.0, ge=0)
    add_ground_truth: bool = True
    beta: float = Field(0.1, ge=0)
    sft_weight: float = Field(0.0, ge=0)  # DPO: + this x the chosen side's NLL (RPO); 0 = plain DPO
    learning_rate: float = Field(1.0e-5, gt=0)
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(1, ge=1)
    gradient_accumulation_steps: int = Field(4, ge=1)
    warmup_steps: int = Field(0, ge=0)
    max_steps: int = Field(0, ge=0)
    rescore: bool = True
    threads: int = _threads()


# ---------------------------------------------------------------- generate
DEFAULT_PREDICTORS: dict[str, dict[str, Any]] = {
    "finetuned": {"kind": "finetuned", "needs": "models/finetune"},
    "posttrained": {"kind": "finetuned", "model": "models/posttrain", "needs": "models/posttrain"},
    "identity": {"kind": "identity", "needs": "data/split/test.jsonl"},
    "propagate": {"kind": "propagate", "needs": "data/split/test.jsonl"},
}


class Generate(Section):
    max_new_tokens: int = Field(512, ge=1)
    batch_size: int = Field(8, ge=1)
    threads: int = _threads()  # CPU runs of hf/finetuned: torch threads, 0 = auto (nep.util.device)
    # > 0: an hf/finetuned/vllm answer stops (tag growth_limit) once it is this many tokens longer than
    # the example's current version; 0 = off (max_new_tokens alone)
    max_growth_tokens: int = Field(0, ge=0)
    # > 0: hf/finetuned answers drafted from the prompt (transformers' prompt lookup, this many tokens
    # per draft), one prompt at a time; greedy tokens the same (nep.predictors.hf); 0 = off
    prompt_lookup_tokens: int = Field(0, ge=0)
    # each entry is checked by its kind (nep.config.entries.check_predictor_entry, called by `validate`)
    predictors: dict[str, dict[str, Any]] = Field(DEFAULT_PREDICTORS, min_length=1)


# ---------------------------------------------------------------- evaluate
class Evaluate(Section):
    # next_version: the real next version vs the extracted file (every predictor); paper_offline: as
    # the paper's generate_offline.py scores its local models (nep/evaluate/protocol.py)
    protocol: Literal["next_version", "paper_offline"] = "next_version"
    context_lines: int = Field(3, ge=0)
    reference: str = ""
    bootstrap_samples: int = Field(10000, ge=1)
    seed: int = _seed(0)
    # {predictor: mean token log-prob}: a less sure answer is "no suggestion", scored as the current
    # version (nep/evaluate/coverage.py); predictors not named never abstain
    min_confidence: dict[str, float] = {}


class Params(Section):
    """All of params.yaml: one field per section, named after its stage."""

    ingest: Ingest = _default(Ingest)
    filter: Filter = _default(Filter)
    label: Label = _default(Label)
    process: Process = _default(Process)
    split: Split = _default(Split)
    finetune: Finetune = _default(Finetune)
    posttrain: Posttrain = _default(Posttrain)
    generate: Generate = _default(Generate)
    judge: Judge = _default(Judge)
    evaluate: Evaluate = _default(Evaluate)

    @model_validator(mode="after")
    def _reference_is_a_predictor(self) -> Params:
        """evaluate.reference ("" = the first) and the keys of evaluate.min_confidence name predictors
        of generate.predictors: checked here, before any stage works, rather than by evaluate at the end."""
        names = list(self.generate.predictors)

        def unknown(param: str, name: str) -> str:
            close = difflib.get_close_matches(name, names, n=1)
            return (f"{param}: {name!r} is not one of generate.predictors (have: "
                    f"{', '.join(names)}){f'; did you mean {close[0]!r}?' if close else ''}")

        if self.evaluate.reference and self.evaluate.reference not in names:
            raise ValueError(unknown("evaluate.reference", self.evaluate.reference))
        for name, value in self.evaluate.min_confidence.items():
            if name not in names:
                raise ValueError(unknown("evaluate.min_confidence", name))
            if value > 0:
                raise ValueError(f"evaluate.min_confidence.{name}: {value} is above 0, and a mean token log-prob "
                                 "never is (every answer would abstain): use a value at or below 0")
        return self


# the section models by stage name (nep.config.params.load_section)
SECTIONS: dict[str, type[Section]] = {name: field.annotation for name, field in Params.model_fields.items()}


def section(name: str, values: Any) -> Section:
    """The `name:` section as its schema object: `values` as it is when it already is one, else a
    mapping checked against the schema (ParamsError naming `<name>.<key>`); for library callers
    and tests that hold plain data. Stages get theirs from nep.config.params.load_section."""
    model = SECTIONS[name]
    if isinstance(values, model):
        return values
    try:
        return model.model_validate(values)
    except ValidationError:
        try:
            Params.model_validate({name: values})
        except ValidationError as e:
            raise ParamsError(format_errors(e)) from None
        raise


# ---------------------------------------------------------------- errors, one line each (nep.config.messages)
# What a bound means, for the keys whose bound alone would not say it
RANGES = {"seed": f"0 to 2**32-1 = {MAX_SEED}",
          "workers": f"0 to {MAX_WORKERS} worker processes; 0 = one per usable core",
          "threads": f"0 to {MAX_THREADS}; 0 = chosen for this machine"}


def format_errors(exc: ValidationError, path: str | Path = "params.yaml") -> str:
    return messages.format_errors(exc, Params, path, RANGES)


def validate(params: Any, path: str | Path = "params.yaml") -> dict[str, Any]:
    """All of params.yaml, checked (every section; each predictor entry's shape, kind and `needs`:
    its options are nep.commands.config.check's), with every default filled in, as plain data;
    ParamsError with one line per problem."""
    if params is None:
        params = {}
    lines = [f"{path}: {p}" for p in predictor_problems(params)]
    try:
        checked = Params.model_validate(params).model_dump()
    except ValidationError as e:
        lines[:0] = format_errors(e, path).splitlines()
    if lines:
        raise ParamsError("\n".join(lines))
    return checked


def default(model: type[BaseModel], key: str) -> Any:
    """The schema's default of one key (`default(IngestGit, "max_file_bytes")`): library code that
    offers a keyword default takes it from here, its one home."""
    return model.model_fields[key].get_default(call_default_factory=True)


def defaults() -> dict[str, Any]:
    return Params().model_dump()
