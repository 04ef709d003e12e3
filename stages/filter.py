"""Stage filter: keep the commit records that pass the paper's filters (nep.data.filter).

Run: `python -m stages.filter` (reads `params.yaml: filter:`), or `dvc repro filter`.
Reads ingest's output, data/ingest/ (its index: records over `filter.max_chars` are counted without
being read; the others are read where they lie, in parallel batches of `filter.workers` processes);
writes the survivors, all fields kept, in input order, to data/filter/commits.jsonl and
metrics/filter.json (records in/out, drops per reason, in/out per language).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nep.config.params import load_section
from nep.config.schema import Filter
from nep.data.filter import run_filter
from nep.util import paths
from nep.util.jsonl import write_metrics

INPUT = paths.INGEST
OUTPUT = paths.FILTER
METRICS = paths.metrics("filter")


def run(cfg: Filter, *, input_path: Path = INPUT, output_path: Path = OUTPUT, metrics_path: Path = METRICS
        ) -> dict[str, Any]:
    """Filter `input_path` (ingest's directory, or a JSONL file of records) with the `filter:`
    params; write survivors and metrics; return the metrics."""
    metrics = run_filter(input_path, output_path, cfg, cfg.workers)
    write_metrics(metrics_path, metrics)
    return metrics


def main() -> None:
    print(run(load_section("filter")))  # a known failure (NepError) is one line: run_main


def banner() -> None:
    from nep.util.console import banner as show

    show("filter", "keep the commits whose edits fit the filter.* limits", [paths.INGEST / "index.jsonl"])


if __name__ == "__main__":
    from nep.util.cli import run_main

    run_main(main, "filter", banner=banner)
