"""Stage ingest: collect commit records (CommitPackFT schema) from the source `ingest.source` picks.

Run: `python -m stages.ingest` (reads `params.yaml: ingest:`), or `dvc repro ingest`.
Sources: `git` (mine local repositories, nep.sources.git_records), `jsonl` (local JSONL/Parquet
files), `hf` (bigcode/commitpackft through `datasets`). Writes data/ingest/commits.jsonl in a
deterministic order and metrics/ingest.json (records, drops by reason, records per language).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from nep.jsonl import InputError, flat_counts, write_jsonl, write_metrics
from nep.params import load_params
from nep.sources import DEFAULT_LANGUAGES, dedupe, git_records, hf_records, jsonl_records

OUTPUT = Path("data/ingest/commits.jsonl")
METRICS = Path("metrics/ingest.json")


def run(*, source: str = "git", languages: list[str] | tuple[str, ...] = DEFAULT_LANGUAGES, git: dict | None = None,
        jsonl: dict | None = None, hf: dict | None = None, output_path: Path = OUTPUT,
        metrics_path: Path = METRICS) -> dict[str, Any]:
    """Ingest from `source` with its params section; write records and metrics; return the metrics."""
    drops: Counter = Counter()
    if source == "git":
        records = git_records(languages=languages, drops=drops, **(git or {}))
    elif source == "jsonl":
        records = jsonl_records(languages=languages, drops=drops, **(jsonl or {}))
    elif source == "hf":
        records = hf_records(languages=languages, drops=drops, **(hf or {}))
    else:
        raise ValueError(f"ingest.source must be git, jsonl or hf, not {source!r}")
    per_language: Counter = Counter()

    def counted(rs):
        for r in dedupe(rs, drops):
            per_language[r["lang"]] += 1
            yield r

    n = write_jsonl(output_path, counted(records))
    metrics = {
        "source": source,
        "records_out": n,
        **flat_counts("dropped", drops),
        **flat_counts("language", per_language),
    }
    write_metrics(metrics_path, metrics)
    if n == 0:
        hint = {
            "git": "a shallow clone (git fetch --unshallow), a rev range without modified source files, "
            "or ingest.languages not matching the repository",
            "jsonl": "files in another schema or languages outside ingest.languages",
            "hf": "language configs that do not exist, or max_records_per_language",
        }[source]
        raise InputError(f"ingest ({source}) produced no record: likely {hint}; drops: {dict(drops)}")
    return metrics


def main() -> None:
    print(run(**load_params("ingest")))


if __name__ == "__main__":
    main()
