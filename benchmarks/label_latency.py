"""Labeling wall time against a server with long-tailed latency: nep's backend vs batch-and-wait.

Run: `python -m benchmarks.label_latency` (about two minutes; `--n 500` for a quick look).

A local OpenAI-compatible server (tests/fake_openai.py) answers each request after a lognormal
delay (median 0.2 s, p99 3 s; fixed per prompt, so every method sees the same latencies). We label
`--n` synthetic commits with nep's relevance prompt, at the same cap of requests in flight:
- batch-of-50 `asyncio.gather`: the paper's pattern, each batch waits for its slowest request;
- nep (the `openai` labeler, `nep.data.label.LABELERS`): a bounded pool, a new request as soon as one finishes;
- nep again: everything is answered from the on-disk cache, no request is sent.
Prints a table and writes benchmarks/results/label_latency.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

from nep.data.label import LABELERS
from nep.data.relevance import relevance_messages
from nep.llm.verdicts import build
from tests.fake_openai import FakeOpenAI  # the fake server lives with the tests

ROOT = Path(__file__).resolve().parents[1]

MEDIAN_S, P99_S = 0.2, 3.0
SIGMA = math.log(P99_S / MEDIAN_S) / 2.3263  # z(0.99)


def latency(key: str) -> float:
    return random.Random(key).lognormvariate(math.log(MEDIAN_S), SIGMA)


def records(n: int) -> list[dict]:
    base = "".join(f"value_{k} = compute({k})\n" for k in range(30))
    out = []
    for i in range(n):
        lines = base.splitlines(keepends=True)
        new = lines[:5] + [f"limit_{i} = {i}\n"] + lines[5:20] + [f"check(limit_{i})\n"] + lines[20:]
        out.append({"commit": f"{i:040x}", "old_file": "calc.py", "new_file": "calc.py", "old_contents": base,
                    "new_contents": "".join(new), "subject": "s", "message": "m", "lang": "Python",
                    "repos": "bench"})
    return out


async def batch_and_wait(url: str, model: str, messages: list[list[dict]], batch: int) -> int:
    """The paper's pattern: asyncio.gather over batches of `batch` requests."""
    from openai import AsyncOpenAI

    client = AsyncOpenAI(api_key="bench", base_url=url, max_retries=0, timeout=60)
    answered = 0
    for start in range(0, len(messages), batch):
        replies = await asyncio.gather(*(
            client.chat.completions.create(model=model, messages=m, temperature=0.0, max_tokens=5)
            for m in messages[start:start + batch]))
        answered += sum(1 for r in replies if r.choices[0].message.content)
    await client.close()
    return answered


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50, help="requests in flight (= the batch size)")
    args = parser.parse_args()
    os.environ["NEP_CACHE_DIR"] = tempfile.mkdtemp(prefix="nep-bench-")
    os.environ["NEP_BENCH_KEY"] = "bench"
    recs = records(args.n)
    model = "bench-model"
    rows = []
    with FakeOpenAI(latency=latency) as server:
        delays = sorted(latency(server.plan({"model": model, "messages": relevance_messages(r)})[0]) for r in recs)
        server.reset_counts()
        print(f"{args.n} prompts; server latency median {statistics.median(delays):.2f} s, "
              f"p99 {delays[int(0.99 * len(delays))]:.2f} s, sum {sum(delays):.0f} s; "
              f"{args.concurrency} requests in flight", flush=True)

        t0 = time.perf_counter()
        answered = asyncio.run(batch_and_wait(server.url, model, [relevance_messages(r) for r in recs],
                                              args.concurrency))
        rows.append((f"batch-of-{args.concurrency} asyncio.gather", time.perf_counter() - t0, server.requests,
                     answered))

        for name in ("nep (cold cache)", "nep (re-run, cached)"):
            server.reset_counts()
            labeler = build(LABELERS, dict(backend="openai", base_url=server.url, model=model,
                                           api_key_env="NEP_BENCH_KEY", concurrency=args.concurrency,
                                           timeout_s=60, max_tokens=5))
            t0 = time.perf_counter()
            labels = [v.value for v in labeler.verdicts(recs)]
            rows.append((name, time.perf_counter() - t0, server.requests, sum(x is not None for x in labels)))

    base = rows[0][1]
    print("\n| method | wall time (s) | requests sent | answered | speed-up |\n|---|---:|---:|---:|---:|")
    for name, wall, sent, answered in rows:
        print(f"| {name} | {wall:.1f} | {sent} | {answered} | {base / wall:.1f}x |")
    out = ROOT / "benchmarks" / "results" / "label_latency.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"n": args.n, "concurrency": args.concurrency, "median_s": MEDIAN_S, "p99_s": P99_S,
                               "rows": [dict(zip(("method", "wall_s", "requests", "answered"), r)) for r in rows]},
                              indent=2) + "\n")


if __name__ == "__main__":
    main()
