"""A real OpenAI-compatible chat-completions server on 127.0.0.1, with injectable faults.

Used by the tests (fixture `fake_openai` in conftest.py) and by benchmarks/label_latency.py, and
runnable by hand as a local endpoint for `label`, `judge` or the `openai` predictor:

    python tests/fake_openai.py --port 8000 --answer yes     # serves http://127.0.0.1:8000/v1

In code:

    with FakeOpenAI() as server:          # server.url == "http://127.0.0.1:PORT/v1"
        ...
        server.requests                   # POSTs received, every attempt counted

Behaviour is driven by markers in the last message (so it is deterministic under concurrency):
- `[[answer:TEXT]]` — the completion is TEXT (default: `default_answer`, "yes").
- `[[delay:SECONDS]]` — the answer comes after that many seconds.
- `[[fault:F1,F2,...]]` — attempt n at this exact request gets fault Fn; later attempts succeed.
  `[[fault:*F]]` — every attempt gets F. Faults: 429, 500, 503 (with Retry-After: `retry_after`),
  400, 401 (echoing the Authorization header), slow (sleeps `slow_s`, then answers), drop (closes the connection without a response),
  malformed (200 with a body that is not JSON), empty (200 with empty content), html (200 with a
  gateway's HTML page), nochoices (200, `choices: []`), null (200, `content: null`), echo (200
  answering with the Authorization header, as a misbehaving proxy might).
- `[[logprob:VALUE]]` — with `logprobs: true` in the request, every token's log-probability
  (default: `logprob`, -0.5); without it the answer carries no `logprobs`, as OpenAI's.
A request with `stream: true` gets its answer as server-sent chunks of 4 characters, `chunk_s` apart.
`fail_next(fault, n)` injects a fault into the next n requests whatever their content, and
`latency(key) -> seconds` adds a delay to every answer (key: a hash of the request body).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ANSWER = re.compile(r"\[\[answer:(.*?)\]\]", re.S)
FAULT = re.compile(r"\[\[fault:(\*?)([\w,]+)\]\]")
DELAY = re.compile(r"\[\[delay:([\d.]+)\]\]")
LOGPROB = re.compile(r"\[\[logprob:(-?[\d.]+)\]\]")


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 1024


class FakeOpenAI:
    def __init__(self, *, default_answer: str = "yes", latency: Callable[[str], float] | None = None,
                 retry_after: str = "0.05", slow_s: float = 1.5, port: int = 0, logprob: float = -0.5,
                 chunk_s: float = 0.0):
        self.port = port  # 0: any free port
        self.default_answer = default_answer
        self.latency = latency
        self.retry_after = retry_after
        self.slow_s = slow_s
        self.logprob = logprob
        self.chunk_s = chunk_s  # between the chunks of a streamed answer
        self.lock = threading.Lock()
        self.requests = 0
        self.by_key: Counter = Counter()  # attempts per distinct request body
        self.faults_served: Counter = Counter()
        self.authorization: set[str] = set()
        self.in_flight = 0
        self.max_in_flight = 0
        self._next_faults: list[str] = []
        self._httpd: _Server | None = None

    # --- control ---------------------------------------------------------------------------------
    @property
    def url(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/v1"

    def fail_next(self, fault: str, n: int = 1) -> None:
        with self.lock:
            self._next_faults += [fault] * n

    def reset_counts(self) -> None:
        with self.lock:
            self.requests = 0
            self.by_key.clear()
            self.faults_served.clear()
            self.max_in_flight = 0

    def start(self) -> FakeOpenAI:
        handler = type("Handler", (_Handler,), {"fake": self})
        self._httpd = _Server(("127.0.0.1", self.port), handler)
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._httpd:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None

    def __enter__(self) -> FakeOpenAI:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # --- behaviour -------------------------------------------------------------------------------
    def plan(self, body: dict) -> tuple[str, str | None, str, float]:
        """(key, fault or None, answer, delay) for one request body; counts the attempt."""
        messages = body.get("messages") or []
        key = hashlib.sha256(json.dumps([body.get("model"), messages], sort_keys=True).encode()).hexdigest()
        last = str(messages[-1].get("content", "")) if messages else ""
        answer = m.group(1) if (m := ANSWER.search(last)) else self.default_answer
        with self.lock:
            self.requests += 1
            attempt = self.by_key[key]
            self.by_key[key] += 1
            fault = self._next_faults.pop(0) if self._next_faults else None
        if fault is None and (m := FAULT.search(last)):
            always, faults = m.group(1) == "*", m.group(2).split(",")
            if always:
                fault = faults[0]
            elif attempt < len(faults):
                fault = faults[attempt]
        if fault:
            with self.lock:
                self.faults_served[fault] += 1
        delay = float(m.group(1)) if (m := DELAY.search(last)) else 0.0
        if self.latency is not None:
            delay += self.latency(key)
        return key, fault, answer, delay


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    fake: FakeOpenAI

    def log_message(self, *args) -> None:  # quiet
        pass

    def handle(self) -> None:
        try:
            super().handle()
        except (BrokenPipeError, ConnectionResetError):  # the client went away (closed, or timed out) first
            self.close_connection = True

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = {"Content-Type": "application/json", **(headers or {})}
        self.send_header("Content-Length", str(len(payload)))
        for k, v in headers.items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(payload)

    def _stream(self, reply: dict, body: dict) -> None:
        """`reply` as server-sent events: a chunk per 4 characters (with their log-probabilities when
        asked), `chunk_s` apart, the usage last when `stream_options.include_usage`, then [DONE]."""
        choice = reply["choices"][0]
        text = choice["message"]["content"]
        logprobs = (choice.get("logprobs") or {}).get("content")
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        base = {k: reply[k] for k in ("id", "created", "model")} | {"object": "chat.completion.chunk"}

        def event(payload: dict) -> None:
            self.wfile.write(f"data: {json.dumps(payload)}\n\n".encode())
            self.wfile.flush()

        for n, start in enumerate(range(0, len(text), 4)):
            if n:
                time.sleep(self.fake.chunk_s)
            delta = {"content": text[start : start + 4], **({"role": "assistant"} if n == 0 else {})}
            piece = {"index": 0, "delta": delta, "finish_reason": None}
            if logprobs:
                piece["logprobs"] = {"content": [logprobs[n]]}
            event({**base, "choices": [piece]})
        event({**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
        if (body.get("stream_options") or {}).get("include_usage"):
            event({**base, "choices": [], "usage": reply["usage"]})
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.close_connection = True

    def _error(self, status: int, message: str, headers: dict[str, str] | None = None) -> None:
        self._send(status, json.dumps({"error": {"message": message, "type": "fake", "code": status}}).encode(),
                   headers)

    def do_POST(self) -> None:
        fake = self.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length)
        if not self.path.rstrip("/").endswith("/chat/completions"):
            self._error(404, f"no route {self.path}")
            return
        try:
            body = json.loads(raw)
        except json.JSONDecodeError:
            self._error(400, "request body is not JSON")
            return
        with fake.lock:
            fake.authorization.add(self.headers.get("Authorization", ""))
        key, fault, answer, delay = fake.plan(body)
        with fake.lock:
            fake.in_flight += 1
            fake.max_in_flight = max(fake.max_in_flight, fake.in_flight)
        try:
            time.sleep(delay)
            if fault == "429":
                self._error(429, "rate limited", {"Retry-After": fake.retry_after})
            elif fault == "401":  # echoes the credentials, as some proxies do
                self._error(401, f"injected 401: bad credentials {self.headers.get('Authorization', '')}")
            elif fault in ("500", "503"):  # overloaded servers say when to come back, as OpenAI's do
                self._error(int(fault), f"injected {fault}", {"Retry-After": fake.retry_after})
            elif fault == "400":
                self._error(400, "injected 400")
            elif fault == "drop":
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
            elif fault == "malformed":
                self._send(200, b'{"id": "chatcmpl-x", "choices": [{"message": ')
            elif fault == "html":
                page = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
                self._send(200, page, {"Content-Type": "text/html"})
            elif fault in ("nochoices", "null"):
                choices = [] if fault == "nochoices" else [
                    {"index": 0, "message": {"role": "assistant", "content": None}, "finish_reason": "stop"}]
                self._send(200, json.dumps({"id": "chatcmpl-x", "object": "chat.completion", "created": 0,
                                            "model": body.get("model", ""), "choices": choices}).encode())
            else:
                if fault == "slow":
                    time.sleep(fake.slow_s)
                text = ("" if fault == "empty" else
                        f"{answer} (your header: {self.headers.get('Authorization', '')})" if fault == "echo" else answer)
                prompt_chars = sum(len(str(m.get("content", ""))) for m in body.get("messages") or [])
                reply = {
                    "id": f"chatcmpl-{key[:12]}",
                    "object": "chat.completion",
                    "created": int(time.time()),
                    "model": body.get("model", ""),
                    "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                                 "finish_reason": "stop"}],
                    "usage": {"prompt_tokens": prompt_chars // 4 + 1, "completion_tokens": len(text) // 4 + 1,
                              "total_tokens": prompt_chars // 4 + len(text) // 4 + 2},
                }
                if body.get("logprobs"):  # one entry per 4 characters, as if tokens
                    last = str((body.get("messages") or [{}])[-1].get("content", ""))
                    given = LOGPROB.search(last)
                    value = float(given.group(1)) if given else fake.logprob
                    pieces = [text[i : i + 4] for i in range(0, len(text), 4)]
                    reply["choices"][0]["logprobs"] = {"content": [
                        {"token": t, "logprob": value, "bytes": list(t.encode()), "top_logprobs": []} for t in pieces]}
                if body.get("stream"):
                    self._stream(reply, body)
                else:
                    self._send(200, json.dumps(reply).encode())
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True  # the client gave up (timeout) first
        finally:
            with fake.lock:
                fake.in_flight -= 1


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description="A local OpenAI-compatible chat server for trying nep offline.")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--answer", default="yes", help="what every request is answered (unless it asks otherwise)")
    args = parser.parse_args()
    with FakeOpenAI(default_answer=args.answer, port=args.port) as server:
        print(f"serving {server.url} (Ctrl-C stops)", flush=True)
        with contextlib.suppress(KeyboardInterrupt):
            threading.Event().wait()


if __name__ == "__main__":
    main()
