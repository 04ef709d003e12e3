"""The `openai` predictor: any OpenAI-compatible chat endpoint (API models, `vllm serve`) through
nep.llm.client's `openai` backend, with the chat prompt of instruct models.

One backend serves the whole run: every remaining example becomes one request of a single
`complete_many` call, which keeps `concurrency` requests in flight and streams answers back as
they arrive (each saved at once by nep.predictors.runner). Answers are cached like every LLM call, so a
re-run sends only what is missing. A request that fails after the backend's retries is a failed
prediction (``backend_error.<reason>``): never saved, so a rerun asks again; more of them than
`max_failure_rate` allows fails the run (nep.predictors.runner). The backend's accounting of this
run (`llm.requests`, `llm.cache_hits`, `llm.retries`, tokens, `llm.cost_usd` with `prices`) depends
on what earlier runs answered, so it goes to the timing report, not the metrics; the metrics count
failures once, from the records (`failed`, `extraction.backend_error.<reason>`).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Any, ClassVar

from nep.core.extract import Style
from nep.llm.backends import get_backend
from nep.llm.chat import ChatRequest
from nep.predictors.base import LOGPROB_DIGITS, Prediction, Predictor
from nep.predictors.prompts import chat_messages
from nep.util.errors import NepError

# Options passed to the backend when given; left unset, the backend's own defaults apply.
BACKEND_OPTIONS = ("base_url", "api_key_env", "concurrency", "timeout_s", "max_attempts", "cache")


@dataclass
class OpenAIPredictor(Predictor):
    """`model`: the endpoint's model name. `api_key_env` names the environment variable holding
    the key (the key itself never goes in params; "" for a server without auth). `prices`:
    {model: {input: $/Mtok, output: $/Mtok}} for `llm.cost_usd`."""

    kind: ClassVar[str] = "openai"
    style: ClassVar[Style] = "chat"
    required: ClassVar[tuple[str, ...]] = ("model",)
    model: str = ""
    system: str | None = None  # None: nep's instruction for the answer format
    base_url: str | None = None
    api_key_env: str | None = None
    concurrency: int | None = None
    timeout_s: float | None = None
    max_attempts: int | None = None
    cache: bool | None = None
    prices: dict[str, dict[str, float]] | None = None
    # ask for token log-probabilities (each answer's confidence, `logprob`); only for endpoints that
    # accept the `logprobs` request field (OpenAI's chat models, vllm serve; not reasoning models)
    logprobs: bool = False
    # stream each answer (time to the first token, `ttft_s`, in the timing report); the same answers
    stream: bool = False

    @classmethod
    def check_options(cls, options):
        for key in ("concurrency", "max_attempts"):
            if options.get(key) is not None and options[key] < 1:
                return key, f"must be ≥ 1, got {options[key]}"
        if options.get("timeout_s") is not None and options["timeout_s"] <= 0:
            return "timeout_s", f"must be > 0, got {options['timeout_s']}"
        return super().check_options(options)

    def __post_init__(self):
        if not self.model:
            raise ValueError("kind 'openai' needs `model` (the endpoint's model name)")
        self._backend: Any = None

    def backend_options(self) -> dict[str, Any]:
        """The endpoint's options: this entry's, else the schema's for every OpenAI-compatible
        endpoint (nep.config.schema.LLMParams, the one home of those defaults); greedy."""
        from nep.config.schema import LLMParams

        defaults = LLMParams()
        options = {k: getattr(defaults, k) for k in BACKEND_OPTIONS if k in LLMParams.model_fields}
        options.update({k: getattr(self, k) for k in BACKEND_OPTIONS if getattr(self, k) is not None})
        return {"model": self.model, "temperature": 0.0, **options}

    def backend(self):
        if self._backend is None:
            self._backend = get_backend("openai", **self.backend_options())
        return self._backend

    def predict(self, examples, todo, settings):
        if not todo:
            return

        if importlib.util.find_spec("openai") is None:
            raise NepError(f"{self.param('kind')}: kind 'openai' needs the openai package; "
                                 "pip install -r requirements.txt")
        requests = [
            ChatRequest(id=str(i), messages=chat_messages(examples[i], self.system, fmt=settings.answer_format),
                        max_tokens=settings.max_new_tokens, logprobs=self.logprobs, stream=self.stream)
            for i in todo
        ]

        try:
            for r in self.backend().complete_many(requests):
                if r.error is not None:
                    prediction = Prediction("", error=f"backend_error.{r.error}", latency_s=r.latency_s)
                else:
                    prediction = Prediction(r.text or "", r.output_tokens, latency_s=r.latency_s, ttft_s=r.ttft_s,
                                            logprob=None if r.logprob is None else round(r.logprob, LOGPROB_DIGITS))
                yield [(int(r.id), prediction)]
        except NepError as e:  # no key, endpoint unreachable: one line naming our param
            if not e.param:
                raise
            raise NepError(e.message, param=self.param(e.param), hint=e.hint) from e

    def runs_on(self, settings):
        backend = self.backend()
        where = getattr(backend, "backend", backend)  # behind the response cache
        return {"device": "remote", "machine": f"endpoint {where.base_url} ({self.model})",
                "batch_size": 1, "concurrency": where.concurrency}

    def timing(self):
        # built (no request sent) even when every answer was resumed, so the keys are always there
        accounting = self.backend().accounting
        run = {k: v for k, v in accounting.metrics(self.prices).items() if not k.startswith("llm.failed")}
        return {**run, **accounting.timing()}
