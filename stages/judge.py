"""Stage judge: is each predicted next version right? One run per predictor.

Run: `python -m stages.judge --predictor NAME` (reads `params.yaml: judge:`), or `dvc repro judge`.
Backends (`judge.backend`): `rules` (offline: exact, whitespace-insensitive or syntax-tree-equivalent
to the ground truth, nep.judges) or `openai` (an LLM judges whether the prediction is a reasonable
next edit; any OpenAI-compatible endpoint, see nep.llm).
Reads data/generate/NAME.jsonl; writes data/judge/NAME.jsonl (id, judgment 1/0/null, reason) and
metrics/judge/NAME.json.
"""

from __future__ import annotations

import argparse
from collections import Counter
from collections.abc import Iterator
from itertools import chain
from pathlib import Path
from typing import Any

from nep.jsonl import InputError, flat_counts, read_jsonl, write_jsonl, write_metrics
from nep.params import load_params

REQUIRED = ("id", "prompt", "output", "ground_truth")


def judgments(records: list[dict[str, Any]], backend: str, metrics: dict[str, Any],
              **params: Any) -> Iterator[dict[str, Any]]:
    """Judgment records (id, judgment, reason[, answer]) for valid generation records, in order."""
    if backend == "rules":
        from nep.judges import rules_judgment

        for r in records:
            judgment, reason = rules_judgment(r["output"], r["ground_truth"], r.get("language", ""),
                                              r.get("extracted", True))
            yield {"id": r["id"], "judgment": judgment, "reason": reason}
    elif backend == "openai":
        from nep.judges import judge_with_llm

        # (not zip: the generator must run to its end, where it fills `metrics`)
        for i, (judgment, reason, answer) in enumerate(judge_with_llm(records, metrics=metrics, **params)):
            yield {"id": records[i]["id"], "judgment": judgment, "reason": reason, "answer": answer}
    else:
        raise ValueError(f"unknown judge.backend '{backend}'; choose rules or openai")


def run(*, predictor: str, input_path: Path | None = None, output_path: Path | None = None,
        metrics_path: Path | None = None, backend: str = "rules", max_failure_rate: float = 0.0,
        **params: Any) -> dict[str, Any]:
    """Judge data/generate/<predictor>.jsonl; write judgments and metrics; return the metrics.
    Raises TooManyFailures (after writing both) when null judgments exceed `max_failure_rate`."""
    from tqdm import tqdm

    input_path = input_path or Path(f"data/generate/{predictor}.jsonl")
    output_path = output_path or Path(f"data/judge/{predictor}.jsonl")
    metrics_path = metrics_path or Path(f"metrics/judge/{predictor}.json")
    drops: Counter = Counter()
    valid: list[dict[str, Any]] = []
    invalid: dict[int, dict[str, Any]] = {}  # position -> failed judgment: kept, never silently lost
    for r in read_jsonl(input_path, drops):
        missing = [k for k in REQUIRED if not isinstance(r.get(k), str)]
        if missing:
            invalid[len(valid) + len(invalid)] = {
                "id": r.get("id"), "judgment": None,
                "reason": f"invalid generation record: {', '.join(missing)} missing or not text"}
        else:
            valid.append(r)
    if not valid and not invalid:
        raise InputError(f"{input_path}: no generation records to judge")
    counts: Counter = Counter()
    reasons: Counter = Counter()
    backend_metrics: dict[str, Any] = {}

    def count(j: dict[str, Any]) -> dict[str, Any]:
        counts[{1: "yes", 0: "no"}.get(j["judgment"], "null")] += 1
        if backend == "rules" or j["reason"].startswith("invalid"):
            reasons[j["reason"].split(":")[0].replace(" ", "_")] += 1
        return j

    def counted() -> Iterator[dict[str, Any]]:
        # the failure rate is checked below, once the judgments and metrics are written
        stream = judgments(valid, backend, backend_metrics, check=False, **params)
        position = 0
        for j in chain(tqdm(stream, total=len(valid), desc=f"judge {predictor}", unit="rec"), [None]):
            while position in invalid:  # the invalid records, back at their input position
                yield count(invalid.pop(position))
                position += 1
            if j is not None:
                yield count(j)
                position += 1

    n = write_jsonl(output_path, counted())
    judged = counts["yes"] + counts["no"]
    metrics = {
        "predictor": predictor,
        "backend": backend,
        "records": n,
        "yes": counts["yes"],
        "no": counts["no"],
        "null": counts["null"],
        "yes_rate": round(counts["yes"] / judged, 4) if judged else 0.0,
        **flat_counts("reason", reasons),
        **flat_counts("dropped", drops),
        **backend_metrics,
    }
    write_metrics(metrics_path, metrics)
    if backend != "rules":
        from nep.llm import check_failure_metrics

        check_failure_metrics(backend_metrics, len(valid), max_failure_rate, what="judgments")
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictor", required=True, help="a name under generate.predictors")
    args = parser.parse_args()
    print(run(predictor=args.predictor, **load_params("judge")))


if __name__ == "__main__":
    main()
