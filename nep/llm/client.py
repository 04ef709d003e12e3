"""Chat LLM backends: one interface for label, judge and the `openai` predictor, and its `openai`
backend. The interface's types are nep.llm.chat's, its accounting nep.llm.accounting's, the key's
protection nep.llm.secrets's.

Interface (stable; code against this):

    from nep.llm.backends import get_backend
    from nep.llm.chat import ChatRequest
    backend = get_backend("openai", base_url="http://127.0.0.1:8000/v1", model="m", api_key_env="OPENAI_API_KEY",
                          concurrency=16, timeout_s=60.0, max_attempts=6, temperature=0.0)
    for result in backend.complete_many([ChatRequest(id="a", messages=[{"role": "user", "content": "hi"}])]):
        result.id, result.text, result.error, result.detail   # text is None iff error is set
        result.input_tokens, result.output_tokens, result.latency_s, result.attempts, result.cached
    backend.accounting.metrics(prices)   # flat "llm.*" accounting for metrics/<stage>.json
    backend.accounting.timing()          # {"llm.wall_time_s": ...} for metrics/timing/ (never metrics/)

- `complete_many` yields one `ChatResult` per request, in completion order (cache hits first), as
  each answer arrives; at most `concurrency` requests are in flight (a thread pool over the `openai`
  client). It never raises for a failed request: the result carries `error` (a FAILURE_REASONS
  key) and `detail`. It raises `NepError` (naming the param) when the key is missing or the
  endpoint cannot be reached at all.
- Retries are the `openai` client's own (`max_retries = max_attempts - 1`): 408/409/429/5xx,
  timeouts and connection errors, exponential backoff with jitter, honouring Retry-After. A 200
  that is not a usable completion (a truncated JSON body, a gateway's HTML page, no choices, null
  or empty content) is retried by nep the same way; `max_attempts` bounds all HTTP attempts of a request.
- `nep.llm.backends.get_backend` wraps the backend in nep.llm.cache's SQLite response cache (`cache=False` turns it
  off), so a re-run sends only the requests not yet answered.
- The API key is read from the environment variable *named* by `api_key_env` when requests are
  sent (not when every answer is cached); it is never stored. `api_key_env: ""` for servers without auth.
  Surrounding blanks (spaces, tabs: a pasted key) are stripped; a key still holding a character an
  HTTP header cannot carry (a CR or LF from a CRLF `.env`, any control or non-ASCII character) is
  refused before any request (NepError naming `api_key_env`, never the key). Every text and detail a backend
  returns, and every log line of the HTTP libraries while it runs, is scrubbed of the key in raw,
  escaped (JSON, repr) and URL-quoted form (`scrub`), so a server echoing it cannot put it in a file.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from typing import Any

from nep.llm.accounting import Accounting
from nep.llm.chat import ChatRequest, ChatResult, mean_token_logprob, token_logprobs
from nep.llm.secrets import LIBRARY_LOGGERS, header_problem, scrub, scrubbed_logs, secret_forms
from nep.util.errors import NepError

# A 200 answer that is not a usable completion: retried by nep (the openai client retries only
# statuses and transport errors), with exponential backoff from RETRY_DELAY_S up to MAX_RETRY_DELAY_S.
RETRIED_ANSWERS = ("bad_response", "empty_content")
RETRY_DELAY_S = 0.5
MAX_RETRY_DELAY_S = 8.0


_attempts = threading.local()  # HTTP attempts of the request the current worker thread is sending


def _count_attempt(_request: Any) -> None:
    _attempts.n = getattr(_attempts, "n", 0) + 1


@dataclass
class OpenAIBackend:
    """Any OpenAI-compatible /v1/chat/completions endpoint (OpenAI, DeepSeek, `vllm serve`...)."""

    # No defaults here: the callers pass their params (label:/judge: sections, an openai predictor's
    # entry over the schema's LLMParams), whose one home is nep/config/schema.py.
    model: str
    base_url: str
    api_key_env: str  # the NAME of the variable holding the key
    concurrency: int
    timeout_s: float
    max_attempts: int
    temperature: float | None
    top_p: float | None = None
    max_tokens: int | None = None
    seed: int | None = None
    accounting: Accounting = field(default_factory=Accounting, init=False, repr=False)
    _secrets: tuple[str, ...] = field(default=(), init=False, repr=False)

    def __post_init__(self) -> None:
        if self.concurrency < 1 or self.max_attempts < 1:
            raise ValueError("concurrency and max_attempts must be >= 1")
        self.accounting.model = self.model

    def sampling(self, request: ChatRequest) -> dict[str, Any]:
        params = {"temperature": self.temperature, "top_p": self.top_p,
                  "max_tokens": request.max_tokens or self.max_tokens, "seed": self.seed,
                  "logprobs": True if request.logprobs else None}
        return {k: v for k, v in params.items() if v is not None}

    def identity(self, request: ChatRequest) -> dict[str, Any]:
        """Everything that decides the answer (never the key): what the response cache keys on."""
        return {"base_url": self.base_url.rstrip("/"), "model": self.model, "messages": request.messages,
                "sampling": self.sampling(request)}

    def api_key(self) -> str:
        """The key from the environment, stripped of surrounding blanks; NepError (naming
        `api_key_env`, never the key) when it is unset or holds a character a header cannot carry."""
        if not self.api_key_env:
            return "EMPTY"  # servers without auth (a local vllm serve) accept any key
        raw = os.environ.get(self.api_key_env) or ""
        key = raw.strip(" \t")
        if not key.strip():
            state = "holds only whitespace" if raw else "is not set"
            raise NepError(param="api_key_env", message=f"environment variable {self.api_key_env} {state}: export "
                                 "the API key there, or set api_key_env to \"\" for a server without authentication")
        if problem := header_problem(key):
            raise NepError(param="api_key_env", message=f"environment variable {self.api_key_env} holds {problem}, which "
                                 "cannot be sent in an HTTP header: export the key alone (a CR or LF comes from a "
                                 ".env file with CRLF line endings or a trailing newline)")
        self._secrets = secret_forms(raw, key)
        return key

    def client(self, api_key: str) -> Any:
        import openai

        for name in LIBRARY_LOGGERS:  # no log line per request or retry
            if logging.getLogger(name).level == logging.NOTSET:
                logging.getLogger(name).setLevel(logging.WARNING)
        http_client = getattr(openai, "DefaultHttpx2Client", None) or openai.DefaultHttpxClient  # openai 3 / 1
        return openai.OpenAI(api_key=api_key, base_url=self.base_url, max_retries=self.max_attempts - 1,
                             timeout=self.timeout_s, http_client=http_client(event_hooks={"request": [_count_attempt]}))

    def complete_many(self, requests: Iterable[ChatRequest]) -> Iterator[ChatResult]:
        """One result per request, as answers arrive; see the module docstring."""
        requests = list(requests)
        if not requests:
            return
        api_key = self.api_key()
        client = self.client(api_key)
        with scrubbed_logs(self._secrets if self.api_key_env else ()):
            yield from self._complete(client, api_key, requests)

    def _complete(self, client: Any, api_key: str, requests: list[ChatRequest]) -> Iterator[ChatResult]:
        pool = ThreadPoolExecutor(min(self.concurrency, len(requests)), thread_name_prefix="nep-llm")
        start, before = time.perf_counter(), self.accounting.wall_time_s
        answered = 0
        try:
            futures = [pool.submit(self._send, client, api_key, r) for r in requests]
            for future in as_completed(futures):
                result = future.result()
                if result.error == "unreachable":
                    if not answered:
                        raise NepError(param="base_url", message=f"cannot connect to {self.base_url} ({result.detail}):"
                                             " start the server or fix base_url")
                    result.error = "connection"  # it answered before: count it, go on
                answered += result.error is None
                self.accounting.add(result)
                self.accounting.wall_time_s = before + time.perf_counter() - start
                yield result
        finally:  # stopped early: queued requests are dropped, those in flight end with the client
            pool.shutdown(wait=False, cancel_futures=True)
            client.close()

    def _send(self, client: Any, api_key: str, request: ChatRequest) -> ChatResult:
        """One request to its end: the openai client's retries, then nep's own for a 200 that is
        not a usable completion, at most `max_attempts` HTTP attempts in all."""
        _attempts.n = 0
        t0 = time.perf_counter()
        retries = 0
        while True:
            result = self._attempt(client, request)
            if result.error not in RETRIED_ANSWERS or _attempts.n >= self.max_attempts:
                break
            retries += 1
            time.sleep(min(RETRY_DELAY_S * 2 ** (retries - 1), MAX_RETRY_DELAY_S))
            client = client.with_options(max_retries=max(0, self.max_attempts - _attempts.n - 1))
        result.attempts, result.latency_s = _attempts.n, time.perf_counter() - t0
        if result.ttft_s is not None:  # _attempt noted the clock at the first piece of text
            result.ttft_s -= t0
        secrets = self._secrets if self.api_key_env else ()
        if result.error is None:
            result.text = scrub(result.text or "", secrets)  # a server echoing the key
            return result
        detail = f"after {_attempts.n} attempts: {result.detail}" if _attempts.n > 1 else result.detail
        # a server echoing the key must not put it in a file; then keep details short
        result.detail = scrub(detail, secrets)[:300]
        return result

    def _attempt(self, client: Any, request: ChatRequest) -> ChatResult:
        """One call of the openai client (its own retries included): the answer or why there is none."""
        import openai

        error, detail = None, ""
        try:
            if request.stream:
                return self._streamed(client, request)
            response = client.chat.completions.create(model=self.model, messages=request.messages,
                                                      **self.sampling(request))
            choices = response.choices
            usage = response.usage
            tokens = (usage.prompt_tokens or 0, usage.completion_tokens or 0) if usage else (0, 0)
            if not choices or choices[0].message is None:
                return ChatResult(request.id, None, "bad_response", "a completion without choices")
            text = choices[0].message.content
            if text and text.strip():
                logprob = mean_token_logprob(choices[0]) if request.logprobs else None
                return ChatResult(request.id, text, None, "", *tokens, logprob=logprob)
            error, detail = "empty_content", f"the completion has {'null' if text is None else 'empty'} content"
        except openai.APITimeoutError:
            error, detail = "timeout", f"no answer within {self.timeout_s}s"
        except openai.APIStatusError as e:
            status = e.status_code
            error = ("rate_limited" if status == 429 else "server_error" if status >= 500
                     else "timeout" if status in (408, 409) else "client_error")
            detail = f"HTTP {status}: {e.message}"
        except openai.APIConnectionError as e:
            cause = e.__cause__
            # refused / unknown host on every attempt: nothing will work (unlike a dropped connection)
            error = "unreachable" if type(cause).__name__ == "ConnectError" else "connection"
            detail = f"{type(cause).__name__}: {cause}" if cause else str(e)
        except (openai.APIResponseValidationError, ValueError, TypeError, AttributeError, IndexError) as e:
            error, detail = "bad_response", f"{type(e).__name__}: {e}"
        return ChatResult(request.id, None, error, detail)

    def _streamed(self, client: Any, request: ChatRequest) -> ChatResult:
        """`_attempt` for a streamed request: the text pieces joined, their log-probabilities, the
        usage of the last chunk, and the clock when the first piece of text came (`ttft_s`, made
        relative by `_send`). The openai client's errors propagate to `_attempt`."""
        pieces: list[str] = []
        logprobs: list[float] = []
        first, tokens, chunks = None, (0, 0), 0
        stream = client.chat.completions.create(model=self.model, messages=request.messages, stream=True,
                                                stream_options={"include_usage": True}, **self.sampling(request))
        for chunk in stream:
            chunks += 1
            if chunk.usage:
                tokens = (chunk.usage.prompt_tokens or 0, chunk.usage.completion_tokens or 0)
            for choice in chunk.choices or []:
                text = getattr(choice.delta, "content", None) if choice.delta is not None else None
                if text:
                    first = first if first is not None else time.perf_counter()
                    pieces.append(text)
                logprobs += token_logprobs(choice)
        text = "".join(pieces)
        if not chunks:
            return ChatResult(request.id, None, "bad_response", "a stream without chunks")
        if not text.strip():
            return ChatResult(request.id, None, "empty_content", "the streamed completion has empty content")
        logprob = sum(logprobs) / len(logprobs) if request.logprobs and logprobs else None
        return ChatResult(request.id, text, None, "", *tokens, logprob=logprob, ttft_s=first)
