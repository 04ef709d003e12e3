"""The `vllm` predictor: the offline vLLM engine (GPU), handed every remaining prompt at once so
it schedules them itself (continuous batching), with a LoRA adapter when given."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Literal

from nep.core.extract import Style
from nep.core.prompts import model_boundary, strip_lead
from nep.predictors.base import Prediction, Predictor, mean_logprob, token_budgets
from nep.predictors.hf import HFPredictor, missing_model
from nep.predictors.prompts import chat_messages, training_prompt
from nep.predictors.stop import EOS, GROWTH, LENGTH
from nep.train.model import check_trained_format
from nep.util.device import cuda_available
from nep.util.errors import NepError

INSTALL_HINT = "pip install -r requirements-gpu.txt (Linux, CUDA)"


def import_vllm(param: str):
    try:
        import vllm
    except ImportError as e:
        raise NepError(f"{param}: kind 'vllm' needs the vllm package ({e}); {INSTALL_HINT}") from e
    return vllm


@dataclass
class VLLMPredictor(Predictor):
    """`model`: hub id or local path of the base (or merged) model; `adapter`: a LoRA adapter
    directory (e.g. models/finetune) served with it, its tokenizer used; when `model` is empty it
    is read from the adapter's adapter_config.json. `chat` as for hf (null → false, the training
    prompt). `template`: the training prompt's layout, nep's or the paper's (for the paper's
    released fine-tuned models)."""

    kind: ClassVar[str] = "vllm"
    model: str = ""
    adapter: str | None = None
    chat: bool | None = None
    template: Literal["nep", "paper"] = "nep"
    system: str | None = None  # None: nep's instruction for the answer format
    system_role: bool = True  # false: the instruction opens the user message (templates without one)
    # hf: where vLLM cannot run (no vllm package or no CUDA GPU), generate with the `hf` predictor
    # on the same model, chat, template and system settings (no adapter), and say so in the metrics
    fallback: Literal["none", "hf"] = "none"
    dtype: str = "auto"
    max_model_len: int | None = None
    max_lora_rank: int = 64
    gpu_memory_utilization: float = 0.9
    tensor_parallel_size: int = 1
    trust_remote_code: bool = False
    # prompts per engine call: null = every remaining prompt at once (fastest; a kill then loses
    # the whole pass); e.g. 512 saves progress every 512 answers
    chunk_size: int | None = None

    @classmethod
    def check_options(cls, options):
        if not options.get("model") and not options.get("adapter"):
            return "model", "required for kind 'vllm' (or an `adapter` that names its base model)"
        if options.get("chunk_size") is not None and options["chunk_size"] < 1:
            return "chunk_size", f"must be ≥ 1 or null, got {options['chunk_size']}"
        if options.get("fallback") == "hf" and options.get("adapter"):
            return "fallback", "hf cannot serve an `adapter`; use kind 'finetuned' for nep's adapter"
        return None

    def __post_init__(self):
        if not self.model and not self.adapter:
            raise ValueError("kind 'vllm' needs `model` (or an `adapter` that names its base model)")
        self._llm = None
        self.fell_back = False
        self._chunk = 0  # prompts per engine call in this run (the timing row's batch size)

    def report(self):
        return {"vllm.fell_back_to_hf": int(self.fell_back)} if self.fallback == "hf" else {}

    def base_model(self) -> str:
        """`model`, else the base model named in the adapter's adapter_config.json."""
        if self.model:
            return self.model
        config = Path(self.adapter) / "adapter_config.json"
        if not config.exists():
            raise NepError(f"{self.param('adapter')}: {config}: not found; is {self.adapter} a LoRA adapter "
                                 "directory (the finetune stage's output)?")
        self.model = json.loads(config.read_text())["base_model_name_or_path"]
        return self.model

    @property
    def style(self) -> Style:  # type: ignore[override]
        return "chat" if self.chat else "completion"

    @property
    def llm(self):
        if self._llm is None:
            vllm = import_vllm(self.param("kind"))
            model = self.base_model()
            adapter = Path(self.adapter) if self.adapter else None
            tokenizer = str(adapter) if adapter and (adapter / "tokenizer_config.json").exists() else None
            try:
                self._llm = vllm.LLM(
                    model=model,
                    tokenizer=tokenizer,
                    dtype=self.dtype,
                    max_model_len=self.max_model_len,
                    enable_lora=bool(self.adapter),
                    max_lora_rank=self.max_lora_rank,
                    gpu_memory_utilization=self.gpu_memory_utilization,
                    tensor_parallel_size=self.tensor_parallel_size,
                    trust_remote_code=self.trust_remote_code,
                )
            except OSError as e:

                raise missing_model(self.param("model"), self.model, e) from e
        return self._llm

    def usable(self) -> bool:
        """Whether vLLM can run here: the package is installed and a CUDA GPU is visible."""
        import importlib.util


        return importlib.util.find_spec("vllm") is not None and cuda_available()

    def hf_fallback(self):

        hf = HFPredictor(model=self.base_model(), chat=bool(self.chat), template=self.template, system=self.system,
                         system_role=self.system_role, dtype=self.dtype, trust_remote_code=self.trust_remote_code)
        hf.name = self.name
        return hf

    def predict(self, examples, todo, settings):
        """Greedy answers through vLLM (every test example in one call, or in `chunk_size` groups);
        with generate.max_growth_tokens, each prompt gets its own token limit."""
        if not todo:
            return
        if self.adapter:  # nep's adapter: held to the answer format it was trained in
            check_trained_format(self.adapter, settings.answer_format, self.param("adapter"))
        if self.fallback == "hf" and not self.adapter and not self.usable():
            self.fell_back = True
            yield from self.hf_fallback().predict(examples, todo, settings)
            return
        vllm = import_vllm(self.param("kind"))
        llm = self.llm
        # logprobs=0: the chosen token's log-probability only (the answer's confidence)
        params = vllm.SamplingParams(temperature=0.0, max_tokens=settings.max_new_tokens, logprobs=0)
        growth = settings.max_growth_tokens
        tokenizer = llm.get_tokenizer() if growth > 0 else None
        lora = None
        if self.adapter:
            from vllm.lora.request import LoRARequest

            lora = LoRARequest("nep-adapter", 1, str(Path(self.adapter).resolve()))
        size = self.chunk_size or len(todo)
        for start_at in range(0, len(todo), size):
            idx = list(todo[start_at : start_at + size])
            batch = [examples[i] for i in idx]
            limits = token_budgets(batch, lambda text: len(tokenizer.encode(text, add_special_tokens=False)),
                                   settings.max_new_tokens, growth)
            per_prompt = ([vllm.SamplingParams(temperature=0.0, max_tokens=n, logprobs=0) for n in limits]
                          if growth > 0 else params)
            start = time.perf_counter()
            if self.chat:
                convs = [chat_messages(ex, self.system, system_role=self.system_role, fmt=settings.answer_format)
                         for ex in batch]
                outputs = llm.chat(convs, per_prompt, lora_request=lora, use_tqdm=False)
            else:
                split = [model_boundary(training_prompt(ex, self.template, settings.answer_format)) for ex in batch]
                outputs = llm.generate([head for head, _ in split], per_prompt, lora_request=lora, use_tqdm=False)
            elapsed = time.perf_counter() - start
            self._chunk = len(batch)
            leads = [""] * len(batch) if self.chat else [lead for _, lead in split]
            yield [
                (i, Prediction(strip_lead(o.outputs[0].text, lead), len(o.outputs[0].token_ids),
                               latency_s=elapsed, ttft_s=first_token_s(o), batch=len(batch),
                               logprob=answer_logprob(o.outputs[0]),
                               tags={"stop": stop_reason(o.outputs[0].finish_reason, limit, settings.max_new_tokens)}))
                for i, o, limit, lead in zip(idx, outputs, limits, leads, strict=True)
            ]

    def runs_on(self, settings):
        if self.fell_back:
            return self.hf_fallback().runs_on(settings)
        from nep.util.machine import describe

        return {"device": "cuda", "machine": describe("cuda"), "batch_size": self._chunk}


def answer_logprob(completion) -> float | None:
    """The mean log-probability of a vLLM completion's tokens: from its per-token `logprobs`
    (asked with logprobs=0: the chosen token's), else its `cumulative_logprob`; None without either."""
    steps = getattr(completion, "logprobs", None)
    ids = list(getattr(completion, "token_ids", None) or [])
    if steps and len(steps) == len(ids):
        values = [step[token].logprob for step, token in zip(steps, ids, strict=True) if token in step]
        if len(values) == len(ids):
            return mean_logprob(values)
    total = getattr(completion, "cumulative_logprob", None)
    return mean_logprob([total / len(ids)]) if total is not None and ids else None


def first_token_s(output) -> float | None:
    """Seconds from a request's arrival to its first token, when vLLM kept its request metrics."""
    metrics = getattr(output, "metrics", None)
    arrival, first = getattr(metrics, "arrival_time", None), getattr(metrics, "first_token_time", None)
    return first - arrival if isinstance(arrival, float) and isinstance(first, float) else None


def stop_reason(finish_reason: str | None, limit: int, max_new_tokens: int) -> str:
    """nep's stop tag (nep.predictors.stop) for a vLLM finish reason: "length" is a cut, at the
    answer's own growth limit when that was below max_new_tokens."""
    if finish_reason != "length":
        return EOS
    return GROWTH if limit < max_new_tokens else LENGTH
