"""Next-edit predictors: one small interface, one class per `kind` of `generate.predictors`.

A predictor maps a batch of processed examples (dicts with at least `prompt`, the training
prompt, and `path`) to raw outputs; nep.extract turns those into next versions, in the
predictor's `style`. Kinds (options are the dataclass fields of each class):

- ``identity``: the current version unchanged (a floor).
- ``propagate``: repeats the most recent edit at the next place it applies (nep.propagate).
- ``finetuned``: the finetune stage's LoRA adapter on its base model (nep.training.load_finetuned),
  given the training prompt, greedy.
- ``hf``: any causal LM through transformers; base models get the training prompt, instruct models
  (``chat: true``, or auto when the tokenizer has a chat template) get their chat template with
  SYSTEM_INSTRUCTION and must answer inside ``<next_version>`` tags.
- ``vllm``: the offline vLLM engine (GPU), with a LoRA adapter when given.
- ``openai``: any OpenAI-compatible chat endpoint through nep.llm (API models, ``vllm serve``).

Model kinds decode greedily, stop at EOS or `max_new_tokens`, and generate a batch at once (left
padding). Heavy libraries are imported only by the kind that needs them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from nep.extract import Style
from nep.prompts import parse_prompt
from nep.propagate import propagate

log = logging.getLogger(__name__)

SYSTEM_INSTRUCTION = """\
You predict a programmer's next code edit. You are given a source file as it originally was, \
the edits the programmer has made to it so far (a unified diff from the original to the current \
version), and the file as it is now. Work out what the programmer is doing and make the one next \
edit that continues it: typically the same kind of change at the next place it is needed, or the \
step that naturally follows. Leave everything else exactly as it is.

Answer with the complete file after that edit, every line of it, between <next_version> and \
</next_version> tags. Put nothing else between the tags: no explanations, no line numbers, no code \
fence. Anything outside the tags is ignored."""


def chat_messages(example: dict[str, Any], system: str = SYSTEM_INSTRUCTION) -> list[dict[str, str]]:
    """The chat prompt for instruct models: our system instruction, then the example's original
    version, edit history and current version (taken from its training prompt)."""
    sections = parse_prompt(example["prompt"])
    path = example.get("path") or "(unnamed file)"
    user = (
        f"File: {path}\n\n"
        f"<original_code>\n{sections['original']}</original_code>\n\n"
        f"<edits_diff>\n{sections['diff']}</edits_diff>\n\n"
        f"<current_version>\n{sections['current']}</current_version>\n\n"
        "Write the complete next version of the file inside <next_version> tags."
    )
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


@dataclass
class Prediction:
    """A predictor's answer for one example. `skipped` names why the model was not asked
    (e.g. the prompt does not fit its context); the raw output is then ""."""

    raw_output: str
    output_tokens: int
    latency_s: float
    skipped: str | None = None


class Predictor:
    """Base class. `predict` answers a batch of examples in order; `style` says how
    nep.extract reads the raw outputs. `latency_s` of a model prediction is the wall time of the
    call that produced it (its whole batch)."""

    kind: ClassVar[str]
    style: ClassVar[Style] = "completion"

    def predict(self, examples: list[dict[str, Any]], *, max_new_tokens: int) -> list[Prediction]:
        raise NotImplementedError

    @classmethod
    def option_names(cls) -> set[str]:
        """The options a params entry of this kind may set."""
        return _init_fields(cls)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> Predictor:
        return cls(**options)


def _init_fields(cls: type) -> set[str]:
    return {f.name for f in dataclasses.fields(cls) if f.init} if dataclasses.is_dataclass(cls) else set()


# ---------------------------------------------------------------------------------------------
# Non-learned baselines


@dataclass
class IdentityPredictor(Predictor):
    kind: ClassVar[str] = "identity"
    style: ClassVar[Style] = "direct"

    def predict(self, examples, *, max_new_tokens):
        out = []
        for ex in examples:
            start = time.perf_counter()
            current = parse_prompt(ex["prompt"])["current"]
            out.append(Prediction(current, 0, time.perf_counter() - start))
        return out


@dataclass
class PropagatePredictor(Predictor):
    kind: ClassVar[str] = "propagate"
    style: ClassVar[Style] = "direct"
    rules: dict[str, int] = field(default_factory=dict, init=False)  # rule → examples, for metrics

    def predict(self, examples, *, max_new_tokens):
        out = []
        for ex in examples:
            start = time.perf_counter()
            sections = parse_prompt(ex["prompt"])
            result = propagate(sections["original"], sections["current"])
            self.rules[result.rule] = self.rules.get(result.rule, 0) + 1
            out.append(Prediction(result.text, 0, time.perf_counter() - start))
        return out


# ---------------------------------------------------------------------------------------------
# transformers


def resolve_device(device: str | None) -> str:
    """"auto"/None → cuda when available, else cpu."""
    if device and device != "auto":
        return device
    from nep.training import default_device

    return default_device()


def resolve_dtype(dtype: str, device: str):
    """"auto" → bfloat16 on a GPU that supports it, float32 otherwise; else the named torch dtype."""
    import torch

    if dtype == "auto":
        if device.startswith("cuda") and torch.cuda.is_bf16_supported():
            return torch.bfloat16
        return torch.float32
    return getattr(torch, dtype)


# transformers fills every generation option left unset from the model's generation_config.json
# (an instruct model's may hold do_sample, repetition_penalty...): set them all to plain argmax.
PURE_GREEDY: dict[str, Any] = {
    "do_sample": False,
    "num_beams": 1,
    "temperature": 1.0,
    "top_k": 50,
    "top_p": 1.0,
    "typical_p": 1.0,
    "min_p": None,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
    "repetition_penalty": 1.0,
    "encoder_repetition_penalty": 1.0,
    "length_penalty": 1.0,
    "no_repeat_ngram_size": 0,
    "min_length": 0,
}


class TransformersGenerator:
    """Batched greedy generation with a transformers causal LM: left padding, an attention mask,
    stop at any EOS id, padding after EOS dropped. Prompts longer than the model's context are
    skipped (reason ``prompt_too_long``); `max_new_tokens` shrinks so a batch fits the context."""

    def __init__(self, model, tokenizer):
        self.model = model.eval()
        self.tokenizer = tokenizer
        tokenizer.padding_side = "left"
        if tokenizer.pad_token_id is None:
            tokenizer.pad_token = tokenizer.eos_token
        eos = model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos] if eos is not None else [])
        if tokenizer.eos_token_id is not None:
            eos_ids.add(tokenizer.eos_token_id)
        self.eos_ids = sorted(eos_ids)
        self.context = getattr(model.config, "max_position_embeddings", None)

    @property
    def device(self):
        return next(self.model.parameters()).device

    def generate(
        self, prompts: list[str], *, max_new_tokens: int, add_special_tokens: bool = True
    ) -> list[Prediction]:
        import torch
        from transformers import GenerationConfig

        encoded = [self.tokenizer(p, add_special_tokens=add_special_tokens)["input_ids"] for p in prompts]
        results: list[Prediction | None] = [None] * len(prompts)
        todo = []
        for i, ids in enumerate(encoded):
            if self.context is not None and len(ids) >= self.context:
                results[i] = Prediction("", 0, 0.0, skipped="prompt_too_long")
            else:
                todo.append(i)
        if todo:
            longest = max(len(encoded[i]) for i in todo)
            budget = max_new_tokens if self.context is None else min(max_new_tokens, self.context - longest)
            batch = self.tokenizer.pad(
                {"input_ids": [encoded[i] for i in todo]}, padding=True, return_tensors="pt"
            ).to(self.device)
            config = GenerationConfig(
                max_new_tokens=budget,
                pad_token_id=self.tokenizer.pad_token_id,
                eos_token_id=self.eos_ids,
                **PURE_GREEDY,
            )
            start = time.perf_counter()
            with torch.inference_mode():
                generated = self.model.generate(**batch, generation_config=config)
            elapsed = time.perf_counter() - start
            new_tokens = generated[:, batch["input_ids"].shape[1] :].tolist()
            for i, tokens in zip(todo, new_tokens):
                kept = []
                for t in tokens:
                    if t in self.eos_ids:
                        break
                    kept.append(t)
                text = self.tokenizer.decode(kept, skip_special_tokens=False)
                results[i] = Prediction(text, len(kept), elapsed)
        return [r for r in results if r is not None]


def _load_hf(model: str, *, device: str | None, dtype: str, trust_remote_code: bool = False):
    from nep.training import load_base_hf

    device = resolve_device(device)
    lm, tokenizer = load_base_hf(
        model, device=device, dtype=resolve_dtype(dtype, device), trust_remote_code=trust_remote_code
    )
    return lm.to(device), tokenizer


@dataclass
class HFPredictor(Predictor):
    """Any causal LM through transformers. `model`: hub id or local path. `chat`: true for an
    instruct model (chat template + SYSTEM_INSTRUCTION), false for a base model (training
    prompt), null to decide by whether the tokenizer has a chat template."""

    kind: ClassVar[str] = "hf"
    model: str = ""
    chat: bool | None = None
    system: str = SYSTEM_INSTRUCTION
    device: str | None = None
    dtype: str = "auto"
    trust_remote_code: bool = False

    def __post_init__(self):
        if not self.model:
            raise ValueError("kind 'hf' needs `model` (a hub id or local path)")
        self._generator: TransformersGenerator | None = None

    def load(self):
        return _load_hf(self.model, device=self.device, dtype=self.dtype, trust_remote_code=self.trust_remote_code)

    @property
    def generator(self) -> TransformersGenerator:
        if self._generator is None:
            self._generator = TransformersGenerator(*self.load())
            if self.chat is None:
                self.chat = bool(getattr(self._generator.tokenizer, "chat_template", None))
            log.info("%s: %s prompts", self.kind, "chat" if self.chat else "training")
        return self._generator

    @property
    def style(self) -> Style:  # type: ignore[override]
        _ = self.generator  # resolves chat=None
        return "chat" if self.chat else "completion"

    def render(self, example: dict[str, Any]) -> str:
        if not self.chat:
            return example["prompt"]
        return self.generator.tokenizer.apply_chat_template(
            chat_messages(example, self.system), tokenize=False, add_generation_prompt=True
        )

    def predict(self, examples, *, max_new_tokens):
        gen = self.generator
        prompts = [self.render(ex) for ex in examples]
        # A rendered chat template already holds its special tokens (BOS etc.).
        return gen.generate(prompts, max_new_tokens=max_new_tokens, add_special_tokens=not self.chat)


@dataclass
class FinetunedPredictor(HFPredictor):
    """The finetune stage's adapter (`model`: its output directory) on its base model, loaded
    with nep.training.load_finetuned, given the training prompt."""

    kind: ClassVar[str] = "finetuned"
    model: str = "models/finetune"
    chat: bool | None = False

    def __post_init__(self):
        super().__post_init__()
        if self.chat:
            raise ValueError("kind 'finetuned' uses the training prompt; `chat` must be false")

    def load(self):
        from nep.training import load_finetuned

        if not Path(self.model).exists():
            raise FileNotFoundError(f"{self.model}: no fine-tuned model (run the finetune stage first)")
        device = resolve_device(self.device)
        dtype = None if self.dtype == "auto" else resolve_dtype(self.dtype, device)
        return load_finetuned(self.model, device=device, dtype=dtype)


# ---------------------------------------------------------------------------------------------
# vLLM (GPU)


@dataclass
class VLLMPredictor(Predictor):
    """The offline vLLM engine. `model`: hub id or local path of the base (or merged) model;
    `adapter`: a LoRA adapter directory (e.g. models/finetune) served with it, its tokenizer used;
    when `model` is empty it is read from the adapter's adapter_config.json. `chat` as for hf
    (null → false, the training prompt)."""

    kind: ClassVar[str] = "vllm"
    model: str = ""
    adapter: str | None = None
    chat: bool | None = None
    system: str = SYSTEM_INSTRUCTION
    dtype: str = "auto"
    max_model_len: int | None = None
    max_lora_rank: int = 64
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    trust_remote_code: bool = False

    def __post_init__(self):
        if not self.model and self.adapter:
            config = Path(self.adapter) / "adapter_config.json"
            if not config.exists():
                raise FileNotFoundError(f"{config}: not a LoRA adapter directory")
            self.model = json.loads(config.read_text())["base_model_name_or_path"]
        if not self.model:
            raise ValueError("kind 'vllm' needs `model` (or an `adapter` that names its base model)")
        self._llm = None

    @property
    def style(self) -> Style:  # type: ignore[override]
        return "chat" if self.chat else "completion"

    @property
    def llm(self):
        if self._llm is None:
            from vllm import LLM  # GPU only: imported here, never at nep import time

            tokenizer = self.adapter if self.adapter and (Path(self.adapter) / "tokenizer_config.json").exists() else None
            self._llm = LLM(
                model=self.model,
                tokenizer=tokenizer,
                dtype=self.dtype,
                max_model_len=self.max_model_len,
                enable_lora=bool(self.adapter),
                max_lora_rank=self.max_lora_rank,
                gpu_memory_utilization=self.gpu_memory_utilization,
                tensor_parallel_size=self.tensor_parallel_size,
                trust_remote_code=self.trust_remote_code,
            )
        return self._llm

    def predict(self, examples, *, max_new_tokens):
        from vllm import SamplingParams

        llm = self.llm
        params = SamplingParams(temperature=0.0, max_tokens=max_new_tokens)
        lora = None
        if self.adapter:
            from vllm.lora.request import LoRARequest

            lora = LoRARequest("nep-adapter", 1, str(Path(self.adapter).resolve()))
        start = time.perf_counter()
        if self.chat:
            convs = [chat_messages(ex, self.system) for ex in examples]
            outputs = llm.chat(convs, params, lora_request=lora, use_tqdm=False)
        else:
            outputs = llm.generate([ex["prompt"] for ex in examples], params, lora_request=lora, use_tqdm=False)
        elapsed = time.perf_counter() - start
        return [Prediction(o.outputs[0].text, len(o.outputs[0].token_ids), elapsed) for o in outputs]


# ---------------------------------------------------------------------------------------------
# OpenAI-compatible endpoints


@dataclass
class OpenAIPredictor(Predictor):
    """Any OpenAI-compatible chat endpoint through nep.llm's `openai` backend, with the chat prompt
    of instruct models. `api_key_env` names the environment variable holding the key (the key
    itself never goes in params). Every other option of nep.llm.OpenAIBackend (`base_url`,
    `concurrency`, `timeout_s`, `max_attempts`, `cache`, ...) may be given too; answers are cached
    like every LLM call, so a re-run only sends what is missing. A request that fails after the
    backend's retries is recorded unextracted (reason ``backend_error.<reason>``)."""

    kind: ClassVar[str] = "openai"
    style: ClassVar[Style] = "chat"
    model: str = ""
    system: str = SYSTEM_INSTRUCTION
    api_key_env: str = "OPENAI_API_KEY"
    backend: dict[str, Any] = field(default_factory=dict)  # further OpenAIBackend options

    def __post_init__(self):
        if not self.model:
            raise ValueError("kind 'openai' needs `model` (the endpoint's model name)")
        self._backend = None

    @classmethod
    def option_names(cls) -> set[str]:
        from nep.llm import OpenAIBackend

        return _init_fields(cls) - {"backend"} | _init_fields(OpenAIBackend)

    @classmethod
    def from_options(cls, options: dict[str, Any]) -> OpenAIPredictor:
        own = _init_fields(cls) - {"backend"}
        return cls(
            **{k: v for k, v in options.items() if k in own},
            backend={k: v for k, v in options.items() if k not in own},
        )

    def predict(self, examples, *, max_new_tokens):
        from nep.llm import ChatRequest, get_backend

        if self._backend is None:
            self._backend = get_backend(
                "openai", **{"temperature": 0.0, **self.backend, "model": self.model, "api_key_env": self.api_key_env}
            )
        requests = [
            ChatRequest(id=str(i), messages=chat_messages(ex, self.system), max_tokens=max_new_tokens)
            for i, ex in enumerate(examples)
        ]
        results = {r.id: r for r in self._backend.complete_many(requests)}
        out = []
        for req in requests:
            r = results[req.id]
            if r.error is not None:
                out.append(Prediction("", 0, r.latency_s, skipped=f"backend_error.{r.error}"))
            else:
                out.append(Prediction(r.text or "", r.tokens_out, r.latency_s))
        return out


# ---------------------------------------------------------------------------------------------
# Registry

PREDICTOR_KINDS: dict[str, type[Predictor]] = {
    cls.kind: cls
    for cls in (
        IdentityPredictor,
        PropagatePredictor,
        FinetunedPredictor,
        HFPredictor,
        VLLMPredictor,
        OpenAIPredictor,
    )
}
# Keys of a predictor's params entry that are not its options.
RESERVED_KEYS = ("kind", "needs")


def build_predictor(name: str, config: dict[str, Any]) -> Predictor:
    """The predictor `generate.predictors.<name>` describes, or ValueError naming what is wrong.
    Nothing is loaded until the first `predict` call."""
    if not isinstance(config, dict) or "kind" not in config:
        raise ValueError(f"generate.predictors.{name}: needs a `kind` ({', '.join(PREDICTOR_KINDS)})")
    kind = config["kind"]
    if kind not in PREDICTOR_KINDS:
        raise ValueError(f"generate.predictors.{name}: unknown kind {kind!r} ({', '.join(PREDICTOR_KINDS)})")
    cls = PREDICTOR_KINDS[kind]
    options = {k: v for k, v in config.items() if k not in RESERVED_KEYS}
    known = cls.option_names()
    unknown = sorted(set(options) - known)
    if unknown:
        raise ValueError(
            f"generate.predictors.{name}: unknown option(s) {', '.join(unknown)} for kind {kind!r} "
            f"(known: {', '.join(sorted(known)) or 'none'})"
        )
    try:
        return cls.from_options(options)
    except ValueError as e:
        raise ValueError(f"generate.predictors.{name}: {e}") from e
