"""Stage label: mark each filtered record relevant (`label` 1) or not (0), with a `label_reason`.

Run: `python -m stages.label` (reads `params.yaml: label:`), or `dvc repro label`.
`label.backend`: `all` (everything relevant), `heuristic` (nep.labelers: the last chunk shares an
identifier with the earlier chunks), or `openai` (an LLM judges relevance, nep.relevance; a failed
call leaves `label` null). Writes data/label/commits.jsonl (input fields + `label`, `label_reason`)
and metrics/label.json.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nep.jsonl import flat_counts, read_jsonl, write_jsonl, write_metrics
from nep.params import load_params
from nep.records import valid_records

INPUT = Path("data/filter/commits.jsonl")
OUTPUT = Path("data/label/commits.jsonl")
METRICS = Path("metrics/label.json")


def label_records(records: list[dict[str, Any]], *, backend: str = "heuristic",
                  llm_metrics: dict[str, Any] | None = None, **label_params: Any) -> Iterator[dict[str, Any]]:
    """Yield each record with `label` (1/0/None) and `label_reason` set by the chosen backend.
    For `openai`, `llm_metrics` receives the accounting (the caller checks max_failure_rate)."""
    if backend == "openai":
        from nep.relevance import label_with_llm

        yield from label_with_llm(records, metrics=llm_metrics, check=False, **label_params)
        return
    from nep.labelers import get_labeler

    labeler = get_labeler(backend, **label_params)
    for record in records:
        label, reason = labeler(record)
        yield {**record, "label": label, "label_reason": reason}


def run(*, input_path: Path = INPUT, output_path: Path = OUTPUT, metrics_path: Path = METRICS,
        backend: str = "heuristic", **label_params: Any) -> dict[str, Any]:
    """Label the records of `input_path`; write them and the metrics; return the metrics."""
    from tqdm import tqdm

    drops: Counter = Counter()
    records = list(valid_records(read_jsonl(input_path, drops), drops))
    counts: Counter = Counter()
    llm_metrics: dict[str, Any] = {}

    def counted() -> Iterator[dict[str, Any]]:
        labeled = label_records(records, backend=backend, llm_metrics=llm_metrics, **label_params)
        for r in tqdm(labeled, total=len(records), desc="label", unit="rec"):
            counts[{1: "yes", 0: "no"}.get(r.get("label"), "null")] += 1
            yield r

    n = write_jsonl(output_path, counted())
    decided = counts["yes"] + counts["no"]
    metrics = {
        "records_in": len(records) + sum(drops.values()),
        "records_out": n,
        "yes": counts["yes"],
        "no": counts["no"],
        "null": counts["null"],
        "yes_rate": round(counts["yes"] / decided, 4) if decided else 0.0,
        **flat_counts("dropped", drops),
        **llm_metrics,
    }
    write_metrics(metrics_path, metrics)
    if backend == "openai":  # after writing, so the failures by reason are in the metrics too
        from nep.llm import check_failure_metrics

        check_failure_metrics(llm_metrics, len(records), label_params.get("max_failure_rate", 0.0), "labels")
    return metrics


def main() -> None:
    print(run(**load_params("label")))


if __name__ == "__main__":
    main()
