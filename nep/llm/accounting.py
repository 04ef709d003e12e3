"""What a chat backend did, summed over a run: requests, cache hits, retries, failures, tokens, cost."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from nep.llm.chat import ChatResult


@dataclass
class Accounting:
    """What a backend (and its cache) did, summed over its `complete_many` calls."""

    model: str = ""
    requests: int = 0  # results yielded, cache hits included
    cache_hits: int = 0
    attempts: int = 0  # HTTP attempts, retries included
    failures: Counter = field(default_factory=Counter)
    input_tokens: int = 0  # of requests sent in this run (cache hits cost nothing)
    output_tokens: int = 0
    wall_time_s: float = 0.0  # with requests in flight

    def add(self, result: ChatResult) -> None:
        self.requests += 1
        self.cache_hits += result.cached
        self.attempts += result.attempts
        if result.error:
            self.failures[result.error] += 1
        if not result.cached:
            self.input_tokens += result.input_tokens
            self.output_tokens += result.output_tokens

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def cost_usd(self, prices: dict[str, dict[str, float]] | None) -> float | None:
        """Estimated cost from a price table {model: {input: $/Mtok, output: $/Mtok}}."""
        price = (prices or {}).get(self.model)
        if price is None:
            return None
        return round((self.input_tokens * price["input"] + self.output_tokens * price["output"]) / 1e6, 6)

    def metrics(self, prices: dict[str, dict[str, float]] | None = None) -> dict[str, Any]:
        """The same `llm.*` names for every LLM-backed component (no times: see `timing`)."""
        sent = self.requests - self.cache_hits
        out: dict[str, Any] = {
            "llm.requests": self.requests,
            "llm.cache_hits": self.cache_hits,
            "llm.retries": max(0, self.attempts - sent),
            "llm.failed": self.failed,
            **{f"llm.failed.{k}": v for k, v in sorted(self.failures.items())},
            "llm.input_tokens": self.input_tokens,
            "llm.output_tokens": self.output_tokens,
        }
        if (cost := self.cost_usd(prices)) is not None:
            out["llm.cost_usd"] = cost
        return out

    def timing(self) -> dict[str, float]:
        return {"llm.wall_time_s": round(self.wall_time_s, 3)}
