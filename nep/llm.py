"""Chat LLM backends: one interface for label, judge and the `openai` predictor.

Interface (stable; code against this):

    from nep.llm import ChatRequest, get_backend
    backend = get_backend("openai", base_url="http://127.0.0.1:8000/v1", model="m",
                          api_key_env="OPENAI_API_KEY", concurrency=16)
    for result in backend.complete_many([ChatRequest(id="a", messages=[{"role": "user", "content": "hi"}])]):
        result.id, result.text, result.error, result.detail   # text is None iff error is set
        result.tokens_in, result.tokens_out, result.latency_s, result.attempts, result.cached
    backend.stats.metrics()   # flat accounting dict for metrics/<stage>.json ("llm.*" keys)

- `complete_many` yields one `ChatResult` per request, in completion order (cache hits first), as
  each answer arrives; at most `concurrency` requests are in flight. It never raises for a failed
  request: the result carries `error` (a short reason key, see FAILURE_REASONS) and `detail`.
- Retries with exponential backoff and jitter on 429, 5xx, timeouts, dropped connections and
  malformed responses, honouring Retry-After; at most `max_attempts` attempts per request.
- Every answer is stored, as it arrives, in an SQLite cache (WAL; survives SIGKILL) under
  `$NEP_CACHE_DIR/llm` (default `.cache/nep/llm`), keyed by endpoint, model, messages and sampling
  params, never by the key: a re-run sends only the requests not yet answered. Failures are not cached.
- The API key is read from the environment variable *named* by `api_key_env` when requests are
  sent (not when every answer is cached); it is never stored. `api_key_env: ""` for servers without auth.
- `get_backend` resolves names lazily (the `openai` package loads only when a request is sent).
  `backend_config(params)` picks the backend's keys out of a stage's params section.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import importlib
import json
import os
import queue
import random
import re
import sqlite3
import threading
import time
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

FAILURE_REASONS = {
    "rate_limited": "HTTP 429 on every attempt",
    "server_error": "HTTP 5xx on every attempt",
    "timeout": "no answer within timeout_s on every attempt",
    "connection": "connection refused or dropped on every attempt",
    "bad_response": "a response that is not a chat completion (e.g. malformed JSON)",
    "empty_content": "a completion with no text",
    "client_error": "HTTP 4xx other than 429 (bad request, auth, unknown model): not retried",
}

# name -> "module:attribute", imported on first use.
BACKENDS: dict[str, str] = {"openai": "nep.llm:OpenAIBackend"}


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion to make. `max_tokens` overrides the backend's default."""

    id: str
    messages: list[dict[str, str]]
    max_tokens: int | None = None


@dataclass
class ChatResult:
    id: str
    text: str | None
    error: str | None = None  # a FAILURE_REASONS key, None on success
    detail: str = ""
    tokens_in: int = 0
    tokens_out: int = 0
    latency_s: float = 0.0  # of the answering attempt (as first measured, for cache hits)
    attempts: int = 0  # HTTP attempts made in this run (0 for a cache hit)
    cached: bool = False


class TooManyFailures(RuntimeError):
    """More requests failed than a stage's `max_failure_rate` allows."""


@dataclass
class Accounting:
    """What a backend did, summed over its `complete_many` calls."""

    model: str = ""
    requests: int = 0  # results yielded
    cache_hits: int = 0
    requests_sent: int = 0  # HTTP attempts, retries included
    retries: int = 0
    answered: int = 0
    failures: Counter = field(default_factory=Counter)
    tokens_in: int = 0  # of requests sent in this run (cache hits cost nothing)
    tokens_out: int = 0
    wall_time_s: float = 0.0

    @property
    def failed(self) -> int:
        return sum(self.failures.values())

    def cost_usd(self, prices: dict[str, dict[str, float]] | None) -> float | None:
        """Estimated cost from a price table {model: {input: $/Mtok, output: $/Mtok}}."""
        price = (prices or {}).get(self.model)
        if price is None:
            return None
        return round((self.tokens_in * price.get("input", 0.0) + self.tokens_out * price.get("output", 0.0)) / 1e6, 6)

    def metrics(self, prices: dict[str, dict[str, float]] | None = None, prefix: str = "llm") -> dict[str, Any]:
        out: dict[str, Any] = {
            "requests": self.requests,
            "cache_hits": self.cache_hits,
            "requests_sent": self.requests_sent,
            "retries": self.retries,
            "answered": self.answered,
            "failed": self.failed,
            "tokens_in": self.tokens_in,
            "tokens_out": self.tokens_out,
            "wall_time_s": round(self.wall_time_s, 3),
        }
        out.update({f"failures.{k}": v for k, v in sorted(self.failures.items())})
        cost = self.cost_usd(prices)
        if cost is not None:
            out["cost_usd"] = cost
        return {f"{prefix}.{k}": v for k, v in out.items()}


def check_failure_rate(failures: dict[str, int], total: int, max_failure_rate: float, what: str = "requests") -> None:
    """Raise TooManyFailures when sum(failures) / total exceeds `max_failure_rate`."""
    failures = Counter(failures)
    failed = sum(failures.values())
    if not total or failed / total <= max_failure_rate:
        return
    reasons = ", ".join(f"{k}: {v}" for k, v in failures.most_common())
    raise TooManyFailures(
        f"{failed} of {total} {what} failed ({reasons}), more than max_failure_rate={max_failure_rate}. "
        "Answers so far are cached: fix the endpoint or raise the limit and run again."
    )


def check_failure_metrics(metrics: dict[str, Any], total: int, max_failure_rate: float, what: str) -> None:
    """check_failure_rate on the "llm.failures.*" and "llm.unparseable" keys of a stage's metrics."""
    failures = Counter({k.removeprefix("llm.failures."): v for k, v in metrics.items()
                        if k.startswith("llm.failures.")})
    failures["unparseable_answer"] += metrics.get("llm.unparseable", 0)
    check_failure_rate(+failures, total, max_failure_rate, what)


def cache_path() -> Path:
    return Path(os.environ.get("NEP_CACHE_DIR") or ".cache/nep") / "llm" / "responses.sqlite"


class ResponseCache:
    """Answers by request key in SQLite (WAL): each answer is committed as it arrives."""

    def __init__(self, path: Path):
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        # each answer is its own transaction; NORMAL survives a killed process (not a power cut)
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
            "tokens_in INTEGER, tokens_out INTEGER, latency_s REAL, created REAL)"
        )

    def get(self, key: str) -> tuple[str, int, int, float] | None:
        return self.db.execute(
            "SELECT text, tokens_in, tokens_out, latency_s FROM responses WHERE key = ?", (key,)
        ).fetchone()

    def put(self, key: str, result: ChatResult) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?, ?)",
            (key, result.text, result.tokens_in, result.tokens_out, result.latency_s, time.time()),
        )

    def close(self) -> None:
        self.db.close()


def retry_after_s(headers: Any) -> float | None:
    """Seconds to wait from `retry-after-ms` / `Retry-After` (seconds or an HTTP date), if given."""
    if headers is None:
        return None
    if (ms := headers.get("retry-after-ms")) is not None:
        try:
            return max(0.0, float(ms) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        try:
            return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time())
        except (TypeError, ValueError):
            return None


@dataclass
class OpenAIBackend:
    """Any OpenAI-compatible /v1/chat/completions endpoint (OpenAI, DeepSeek, `vllm serve`...)."""

    model: str
    base_url: str = "https://api.openai.com/v1"
    api_key_env: str = "OPENAI_API_KEY"  # the NAME of the variable holding the key
    concurrency: int = 16
    timeout_s: float = 60.0
    max_attempts: int = 6
    backoff_base_s: float = 1.0
    backoff_max_s: float = 60.0
    temperature: float | None = 0.0
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    cache: bool = True
    stats: Accounting = field(default_factory=Accounting, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_attempts < 1:
            raise ValueError("concurrency and max_attempts must be >= 1")
        self.stats.model = self.model

    def sampling(self, request: ChatRequest) -> dict[str, Any]:
        params = {
            "temperature": self.temperature,
            "top_p": self.top_p,
            "max_tokens": request.max_tokens or self.max_tokens,
            "seed": self.seed,
        }
        return {k: v for k, v in params.items() if v is not None}

    def cache_key(self, request: ChatRequest) -> str:
        blob = json.dumps(
            {"base_url": self.base_url.rstrip("/"), "model": self.model, "messages": request.messages,
             "sampling": self.sampling(request)},
            sort_keys=True, ensure_ascii=False,
        )
        return hashlib.sha256(blob.encode()).hexdigest()

    def api_key(self) -> str:
        if not self.api_key_env:
            return "EMPTY"  # servers without auth (a local vllm serve) accept any key
        key = os.environ.get(self.api_key_env)
        if not key:
            raise RuntimeError(
                f"environment variable {self.api_key_env} (api_key_env) is not set; export the API key "
                "there, or set api_key_env: \"\" for a server without authentication"
            )
        return key

    def complete_many(self, requests: Iterable[ChatRequest]) -> Iterator[ChatResult]:
        """One result per request, as answers arrive; see the module docstring."""
        start = time.perf_counter()
        cache = ResponseCache(cache_path()) if self.cache else None
        groups: dict[str, list[ChatRequest]] = {}  # identical requests are sent once
        for request in requests:
            groups.setdefault(self.cache_key(request), []).append(request)
        hits: list[ChatResult] = []
        pending: list[tuple[str, list[ChatRequest]]] = []
        for key, same in groups.items():
            row = cache.get(key) if cache else None
            if row is None:
                pending.append((key, same))
            else:
                text, tin, tout, latency = row
                hits += [ChatResult(r.id, text, None, "", tin or 0, tout or 0, latency or 0.0, 0, True) for r in same]
        results: queue.Queue = queue.Queue()
        stop = threading.Event()
        if pending:
            try:
                api_key = self.api_key()
            except RuntimeError:
                if cache:
                    cache.close()
                raise
            thread = threading.Thread(
                target=self._thread_main, args=(api_key, pending, cache, results, stop), daemon=True
            )
            thread.start()
        try:
            for hit in hits:
                self.stats.requests += 1
                self.stats.cache_hits += 1
                yield hit
            remaining = sum(len(same) for _, same in pending)
            while remaining:
                item = results.get()
                if isinstance(item, BaseException):
                    raise RuntimeError(f"LLM backend crashed: {item!r}") from item
                remaining -= 1
                self.stats.requests += 1
                if item.error:
                    self.stats.failures[item.error] += 1
                else:
                    self.stats.answered += 1
                yield item
        finally:
            stop.set()
            self.stats.wall_time_s += time.perf_counter() - start
            if cache and not pending:
                cache.close()

    # --- the event loop, in its own thread -------------------------------------------------------

    def _thread_main(self, api_key: str, pending, cache, results: queue.Queue, stop: threading.Event) -> None:
        try:
            asyncio.run(self._run(api_key, pending, cache, results, stop))
        except BaseException as e:  # surfaced to the consumer, never swallowed
            results.put(e)
        finally:
            if cache:
                cache.close()

    async def _run(self, api_key: str, pending, cache, results: queue.Queue, stop: threading.Event) -> None:
        from openai import AsyncOpenAI

        client = AsyncOpenAI(api_key=api_key, base_url=self.base_url, max_retries=0, timeout=self.timeout_s)
        work = iter(pending)

        async def worker() -> None:
            for key, same in work:
                if stop.is_set():
                    return
                result = await self._send(client, same[0])
                # a server echoing the key must not put it in a file; then keep details short
                result.detail = result.detail.replace(api_key, "***")[:300]
                if result.error is None and cache:
                    cache.put(key, result)
                results.put(result)
                for duplicate in same[1:]:  # identical requests share the answer, paid once
                    results.put(replace(result, id=duplicate.id, attempts=0, cached=result.error is None))

        try:
            await asyncio.gather(*(worker() for _ in range(min(self.concurrency, len(pending)))))
        finally:
            await client.close()

    async def _send(self, client: Any, request: ChatRequest) -> ChatResult:
        import openai

        reason, detail = "connection", ""
        for attempt in range(1, self.max_attempts + 1):
            wait: float | None = None
            self.stats.requests_sent += 1
            if attempt > 1:
                self.stats.retries += 1
            t0 = time.perf_counter()
            try:
                response = await asyncio.wait_for(
                    client.chat.completions.create(
                        model=self.model, messages=request.messages, **self.sampling(request)
                    ),
                    self.timeout_s,
                )
                latency = time.perf_counter() - t0
                usage = getattr(response, "usage", None)
                tin = getattr(usage, "prompt_tokens", 0) or 0
                tout = getattr(usage, "completion_tokens", 0) or 0
                self.stats.tokens_in += tin
                self.stats.tokens_out += tout
                choices = getattr(response, "choices", None)
                if not choices or not isinstance(choices, list):
                    reason, detail = "bad_response", f"no choices in response: {response}"
                else:
                    text = choices[0].message.content if choices[0].message else None
                    if not text or not text.strip():
                        return ChatResult(request.id, None, "empty_content", "the completion has no text",
                                          tin, tout, latency, attempt)
                    return ChatResult(request.id, text, None, "", tin, tout, latency, attempt)
            except (asyncio.TimeoutError, openai.APITimeoutError):
                reason, detail = "timeout", f"no answer within {self.timeout_s}s"
            except openai.APIStatusError as e:
                status = e.status_code
                detail = f"HTTP {status}: {e.message}"
                wait = retry_after_s(e.response.headers)
                if status == 429:
                    reason = "rate_limited"
                elif status >= 500:
                    reason = "server_error"
                elif status in (408, 409):
                    reason = "timeout"
                else:
                    return ChatResult(request.id, None, "client_error", detail, latency_s=time.perf_counter() - t0,
                                      attempts=attempt)
            except openai.APIConnectionError as e:
                reason, detail = "connection", f"{type(e).__name__}: {e}"
            except (openai.APIResponseValidationError, json.JSONDecodeError, ValueError, TypeError,
                    AttributeError) as e:
                reason, detail = "bad_response", f"{type(e).__name__}: {e}"
            if attempt < self.max_attempts:
                await asyncio.sleep(self.backoff_s(attempt, wait))
        return ChatResult(request.id, None, reason, f"after {self.max_attempts} attempts: {detail}",
                          attempts=self.max_attempts)

    def backoff_s(self, attempt: int, retry_after: float | None = None) -> float:
        """Seconds before attempt `attempt + 1`: the server's Retry-After when given, else
        exponential backoff with equal jitter, capped at backoff_max_s."""
        if retry_after is not None:
            return retry_after
        ceiling = min(self.backoff_max_s, self.backoff_base_s * 2 ** (attempt - 1))
        return ceiling / 2 + random.uniform(0, ceiling / 2)


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


def get_backend(name: str, **config: Any) -> Any:
    """The backend registered under `name`, built with `config` (unknown keys raise TypeError)."""
    cls = backend_class(name)
    try:
        return cls(**config)
    except TypeError as e:
        raise TypeError(f"LLM backend '{name}': {e}") from e


def backend_class(name: str) -> type:
    """The class registered under `name` in BACKENDS, imported on first use."""
    if name not in BACKENDS:
        raise ValueError(f"unknown LLM backend '{name}'; choose one of {sorted(BACKENDS)}")
    module, attr = BACKENDS[name].split(":")
    return getattr(importlib.import_module(module), attr)


def backend_config(params: dict[str, Any], name: str = "openai") -> dict[str, Any]:
    """The keys of a stage's params section that the backend `name` takes."""
    names = {f.name for f in fields(backend_class(name)) if f.init}
    return {k: v for k, v in params.items() if k in names}


_FENCE = re.compile(r"```[\w+-]*")
_ANSWER_IS = re.compile(r"\banswer\b\s*(?:is\s*)?[:=-]?\s*\W*\b(yes|no)\b")


def parse_yes_no(text: str | None) -> bool | None:
    """True/False for a yes/no answer, tolerant of case, punctuation, markdown, code fences and a
    sentence around it; None when there is no answer or it is ambiguous (both words, none first)."""
    if not text:
        return None
    t = _FENCE.sub(" ", text).lower()
    if answers := _ANSWER_IS.findall(t):
        return answers[-1] == "yes"
    words = re.findall(r"[a-z]+", t)
    if not words:
        return None
    if words[0] in ("yes", "no"):
        return words[0] == "yes"
    found = {w for w in words if w in ("yes", "no")}
    return found.pop() == "yes" if len(found) == 1 else None


def yes_no_verdict(result: ChatResult) -> tuple[int | None, str]:
    """(1 or 0, "llm: yes"/"llm: no") for an answered yes/no question; (None, why) when the request
    failed or the answer is neither yes nor no (unparseable: `result.error` is then None)."""
    if result.error:
        return None, f"llm failed: {result.error}: {result.detail}"
    answer = parse_yes_no(result.text)
    if answer is None:
        return None, f"llm answer not yes/no: {result.text[:200]!r}"
    return int(answer), f"llm: {'yes' if answer else 'no'}"
