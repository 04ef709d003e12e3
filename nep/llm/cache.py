"""A response cache any chat backend can wear: answers in SQLite, committed as they arrive.

    from nep.llm.cache import CachedBackend
    backend = CachedBackend(OpenAIBackend(model="m", **endpoint))  # endpoint: base_url, api_key_env... (the params)
    # nep.llm.backends.get_backend wraps a backend this way by default

The wrapped backend must have `complete_many(requests)`, `accounting` (nep.llm.accounting.Accounting) and
`identity(request)` (a JSON-able dict of everything that decides the answer: endpoint, model,
messages, sampling params; never the API key). The key of an answer is the SHA-256 of that
identity. Requests already answered are served from the cache (counted as `cache_hits`); identical
requests in one call are sent once. Only usable answers are stored, never failures: with `accept`
(a test of the text: label and judge accept only a yes/no, nep.llm.answers.is_yes_no), an answer it
refuses (an error page served with 200, a refusal, an empty or ambiguous text) is not stored, and a
stored one it refuses is asked again, so a re-run, a `dvc repro -f` or a run killed with SIGKILL
and started again sends only what is still unanswered, and a run after the endpoint recovers asks
again exactly what failed.
The cache lives in `$NEP_CACHE_DIR/llm/` (default `.cache/nep/llm/`), outside every DVC output.
"""

from __future__ import annotations

import errno
import hashlib
import json
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from nep.llm.chat import ChatRequest, ChatResult
from nep.util import paths


def cache_path() -> Path:
    return paths.cache_root() / "llm" / "responses.sqlite"


class ResponseCache:
    """Answers by key in SQLite (WAL): each answer is its own committed transaction."""

    def __init__(self, path: Path):
        try:
            self._open(path)
        except OSError as e:  # NEP_CACHE_DIR read-only, full, a file: one line naming it
            raise (paths.unwritable(e) or e) from None
        except sqlite3.OperationalError as e:
            why = str(e)
            number = (errno.EROFS if "readonly" in why else errno.ENOSPC if "full" in why
                      else errno.EACCES if "unable to open" in why else None)
            if number is None:
                raise
            raise paths.unwritable(OSError(number, why), path) from None

    def _open(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, timeout=60, isolation_level=None)
        self.db.execute("PRAGMA journal_mode=WAL")
        # NORMAL survives a killed process (not a power cut), at a fraction of FULL's fsyncs
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute(
            "CREATE TABLE IF NOT EXISTS responses (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
            "tokens_in INTEGER, tokens_out INTEGER, latency_s REAL, created REAL, logprob REAL)"
        )
        columns = {row[1] for row in self.db.execute("PRAGMA table_info(responses)")}
        if "logprob" not in columns:  # a cache written before answers carried their confidence
            self.db.execute("ALTER TABLE responses ADD COLUMN logprob REAL")

    def get(self, key: str) -> tuple[str, int, int, float, float | None] | None:
        return self.db.execute(
            "SELECT text, tokens_in, tokens_out, latency_s, logprob FROM responses WHERE key = ?", (key,)
        ).fetchone()

    def put(self, key: str, result: ChatResult) -> None:
        self.db.execute(
            "INSERT OR REPLACE INTO responses (key, text, tokens_in, tokens_out, latency_s, created, logprob) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (key, result.text, result.input_tokens, result.output_tokens, result.latency_s, time.time(),
             result.logprob),
        )

    def close(self) -> None:
        self.db.close()


class CachedBackend:
    """`backend` behind the response cache; same interface (`complete_many`, `accounting`)."""

    def __init__(self, backend: Any, path: Path | None = None, accept: Callable[[str], bool] | None = None):
        self.backend = backend
        self.path = path
        self.accept = accept or (lambda text: True)
        self.accounting = backend.accounting

    def key(self, request: ChatRequest) -> str:
        blob = json.dumps(self.backend.identity(request), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()

    def complete_many(self, requests: Iterable[ChatRequest]) -> Iterator[ChatResult]:
        """Cache hits first, then the backend's results as they arrive (each stored before it is yielded)."""
        groups: dict[str, list[ChatRequest]] = {}
        for request in requests:
            groups.setdefault(self.key(request), []).append(request)
        if sum(map(len, groups.values())) != len({r.id for same in groups.values() for r in same}):
            raise ValueError("request ids must be unique")
        cache = ResponseCache(self.path or cache_path())
        try:
            misses: dict[str, tuple[str, list[ChatRequest]]] = {}
            for key, same in groups.items():
                row = cache.get(key)
                if row is None or not self.accept(row[0]):  # an unusable answer stored by an older nep
                    misses[same[0].id] = (key, same)
                    continue
                text, tin, tout, latency, logprob = row
                for request in same:
                    yield self._counted(ChatResult(request.id, text, None, "", tin or 0, tout or 0, latency or 0.0,
                                                   0, True, logprob))
            sent = [same[0] for _, same in misses.values()]
            for result in self.backend.complete_many(sent):
                key, same = misses[result.id]
                if result.error is None and self.accept(result.text or ""):
                    cache.put(key, result)
                yield result
                for duplicate in same[1:]:  # identical requests share the answer, paid once
                    yield self._counted(replace(result, id=duplicate.id, attempts=0, cached=result.error is None))
        finally:
            cache.close()

    def _counted(self, result: ChatResult) -> ChatResult:
        self.accounting.add(result)
        return result
