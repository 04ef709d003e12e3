"""Stage report: a human-readable summary of the evaluation (nep.evaluate.report).

Run: `python -m stages.report` (or `dvc repro report`), after evaluate. Reads metrics/evaluate.json
(p-values), metrics/evaluate/predictors.json, languages.json and DVCLive's training loss
(metrics/finetune/plots/metrics/train_loss.tsv); writes metrics/report/ (README.md with the
predictor × metric table, 95% CIs, p-values, the per-language table and the charts; predictors.csv,
languages.csv; one SVG per chart, the same Vega-Lite charts as `dvc plots show`) and
metrics/report.json (how many predictors, languages and charts it drew).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nep.evaluate.report import build_report
from nep.util import paths
from nep.util.errors import NepError
from nep.util.jsonl import write_metrics

METRICS = paths.metrics("report")


def run(*, out_dir: Path = paths.REPORT, metrics_path: Path = METRICS) -> dict[str, Any]:
    """Write the report and its counts; return the counts."""
    metrics = build_report(out_dir)
    write_metrics(metrics_path, metrics)
    return metrics


def main() -> None:
    try:
        print(run())
    except NepError as e:  # missing or malformed evaluate tables: one line, no traceback
        raise SystemExit(f"report: {e}") from None


if __name__ == "__main__":
    main()
