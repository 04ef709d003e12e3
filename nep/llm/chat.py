"""The chat interface every LLM backend speaks: requests, results and why a request failed
(see nep.llm.client for the contract and the `openai` backend)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

FAILURE_REASONS = {
    "rate_limited": "HTTP 429 on every attempt",
    "server_error": "HTTP 5xx on every attempt",
    "timeout": "no answer within timeout_s on every attempt (or HTTP 408/409)",
    "connection": "connection dropped on every attempt",
    "bad_response": "a response that is not a chat completion (truncated JSON, an HTML page, no choices) "
                    "on every attempt",
    "empty_content": "a completion with null or empty text on every attempt",
    "client_error": "HTTP 4xx other than 408/409/429 (bad request, auth, unknown model): not retried",
}


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion to make. `max_tokens` overrides the backend's default."""

    id: str
    messages: list[dict[str, str]]
    max_tokens: int | None = None
    logprobs: bool = False  # ask for the answer's token log-probabilities (ChatResult.logprob)
    stream: bool = False  # receive the answer as it is generated (ChatResult.ttft_s); same answer, same cache key


@dataclass
class ChatResult:
    id: str
    text: str | None
    error: str | None = None  # a FAILURE_REASONS key, None on success
    detail: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    latency_s: float = 0.0  # of the answering request (as first measured, for cache hits)
    attempts: int = 0  # HTTP attempts made in this run (0 for a cache hit)
    cached: bool = False
    logprob: float | None = None  # mean token log-probability, when asked for and the endpoint returned it
    ttft_s: float | None = None  # seconds to the first piece of text (a streamed request of this run only)


def mean_token_logprob(choice: Any) -> float | None:
    """The mean of a chat choice's token log-probabilities (`choice.logprobs.content[*].logprob`),
    None when the endpoint returned none."""
    values = token_logprobs(choice)
    return sum(values) / len(values) if values else None


def token_logprobs(choice: Any) -> list[float]:
    """A chat choice's (or streamed chunk's) token log-probabilities, [] when it has none."""
    content = getattr(getattr(choice, "logprobs", None), "content", None) or []
    return [item.logprob for item in content if isinstance(getattr(item, "logprob", None), (int, float))]


def in_request_order(results: Iterable[ChatResult], requests: list[ChatRequest]) -> Iterator[ChatResult]:
    """Re-order streamed results to the order of `requests` (ids must be unique), yielding each as
    soon as all before it have arrived, so a stage's output is deterministic."""
    position = {r.id: i for i, r in enumerate(requests)}
    if len(position) != len(requests):
        raise ValueError("request ids must be unique")
    waiting: dict[int, ChatResult] = {}
    nxt = 0
    for result in results:
        waiting[position[result.id]] = result
        while nxt in waiting:
            yield waiting.pop(nxt)
            nxt += 1
