"""Stage filter: keep the commit records that pass the paper's filters (nep.filters).

Run: `python -m stages.filter` (reads `params.yaml: filter:`), or `dvc repro filter`.
Reads data/ingest/commits.jsonl; writes the survivors, all fields kept, to data/filter/commits.jsonl
and metrics/filter.json (records in/out, drops per reason, in/out per language).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from nep.filters import FilterConfig, filter_records
from nep.jsonl import read_jsonl, write_jsonl, write_metrics
from nep.params import load_params
from nep.records import RecordError, validate_commit

INPUT = Path("data/ingest/commits.jsonl")
OUTPUT = Path("data/filter/commits.jsonl")
METRICS = Path("metrics/filter.json")


def valid_records(path: Path, drops: Counter) -> Iterator[dict[str, Any]]:
    """The records of `path`, contents normalized, extra fields kept; invalid ones counted."""
    for obj in read_jsonl(path, drops):
        try:
            yield {**obj, **validate_commit(obj).to_dict()}
        except RecordError as e:
            drops[e.reason] += 1


def run(*, input_path: Path = INPUT, output_path: Path = OUTPUT, metrics_path: Path = METRICS,
        **params: Any) -> dict[str, Any]:
    """Filter `input_path` with the filter params; write survivors and metrics; return the metrics."""
    config = FilterConfig(**{**params, "edit_types": tuple(params.get("edit_types", ("add",)))})
    invalid: Counter = Counter()
    result = filter_records(valid_records(input_path, invalid), config, progress=True)
    write_jsonl(output_path, result.kept)
    metrics = result.metrics()
    metrics["records_in"] += sum(invalid.values())
    for reason, n in invalid.items():
        metrics[f"dropped.{reason}"] = metrics.get(f"dropped.{reason}", 0) + n
    write_metrics(metrics_path, metrics)
    return metrics


def main() -> None:
    print(run(**load_params("filter")))


if __name__ == "__main__":
    main()
