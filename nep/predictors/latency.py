"""Latency per answer: what the generate stage measured, summed up for metrics/timing/.

Each answer carries, in the runner's checkpoint and in `metrics/timing/generate/<p>.answers.jsonl`
(never in a DVC output):

- `latency_s`: seconds from the request to the answer in hand. Engines that answer a batch in one
  call (hf/finetuned: `generate.batch_size` prompts; vllm: a chunk) hand every answer of the batch
  back at once, so each gets the call's wall time;
- `ttft_s`: seconds to the first generated token, where the engine shows it (hf/finetuned: the
  first decoding step of the batch, i.e. the prefill; vllm: its request metrics when it keeps them);
- `batch`: how many answers shared that call (an answer's share of the machine is
  `latency_s / batch`).

`summary` gives the timing row of a predictor: p50/p95 of latency and time to first token,
seconds of machine time per answer and tokens per second (answers' shares summed: model loading
not included), the batch size, the device and the machine in words (nep.util.machine).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

TIMED_FIELDS = ("latency_s", "ttft_s", "batch")


def percentile(values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0–100) by linear interpolation between ranks, None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    at = (len(ordered) - 1) * q / 100
    low = math.floor(at)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (at - low)


def _rounded(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(value, digits)


def answer_row(answer: dict[str, Any], resumed: bool) -> dict[str, Any]:
    """One line of the per-answer side file from a runner entry."""
    return {"id": answer["id"], "latency_s": answer.get("latency_s", 0.0), "ttft_s": answer.get("ttft_s"),
            "batch": answer.get("batch", 1), "output_tokens": answer["output_tokens"],
            "answered": not answer.get("skipped"), **({"resumed": True} if resumed else {})}


def summary(rows: Sequence[dict[str, Any]], *, where: dict[str, Any]) -> dict[str, Any]:
    """The timing row of a predictor from its answers' rows (`answer_row`): only answers the engine
    produced count (no skip, no failure, a measured latency). `where`: batch_size, device, machine."""
    timed = [r for r in rows if r["answered"] and r["latency_s"] > 0]
    latencies = [r["latency_s"] for r in timed]
    ttfts = [r["ttft_s"] for r in timed if r.get("ttft_s") is not None]
    busy = sum(r["latency_s"] / max(r["batch"], 1) for r in timed)  # machine time, each call counted once
    tokens = sum(r["output_tokens"] for r in timed)
    return {
        "answers_timed": len(timed),
        "latency_p50_s": _rounded(percentile(latencies, 50)),
        "latency_p95_s": _rounded(percentile(latencies, 95)),
        "ttft_p50_s": _rounded(percentile(ttfts, 50)),
        "ttft_p95_s": _rounded(percentile(ttfts, 95)),
        "s_per_answer": _rounded(busy / len(timed)) if timed else None,
        "tokens_per_s": round(tokens / busy, 3) if busy > 0 and tokens else None,  # None: no token counts
        **where,
    }
