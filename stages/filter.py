"""Stage filter: keep the commit records that pass the paper's filters (nep.filters).

Run: `python -m stages.filter` (reads `params.yaml: filter:`), or `dvc repro filter`.
Reads data/ingest/commits.jsonl; writes the survivors, all fields kept, to data/filter/commits.jsonl
and metrics/filter.json (records in/out, drops per reason, in/out per language).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from nep.filters import FilterConfig, filter_records
from nep.jsonl import read_jsonl, write_jsonl, write_metrics
from nep.params import load_params
from nep.records import valid_records

INPUT = Path("data/ingest/commits.jsonl")
OUTPUT = Path("data/filter/commits.jsonl")
METRICS = Path("metrics/filter.json")


def run(*, input_path: Path = INPUT, output_path: Path = OUTPUT, metrics_path: Path = METRICS,
        **params: Any) -> dict[str, Any]:
    """Filter `input_path` with the filter params; write survivors and metrics; return the metrics."""
    config = FilterConfig(**params)
    invalid: Counter = Counter()
    result = filter_records(valid_records(read_jsonl(input_path, invalid), invalid), config, progress=True)
    write_jsonl(output_path, result.kept)
    result.dropped.update(invalid)
    metrics = result.metrics()
    metrics["records_in"] += sum(invalid.values())
    write_metrics(metrics_path, metrics)
    return metrics


def main() -> None:
    print(run(**load_params("filter")))


if __name__ == "__main__":
    main()
