"""Stage report: a human-readable summary of the evaluation (nep.evaluate.report).

Run: `python -m stages.report` (or `dvc repro report`), after evaluate. Reads metrics/evaluate.json
(p-values), metrics/evaluate/predictors.json, languages.json and DVCLive's training loss
(metrics/finetune/plots/metrics/train_loss.tsv) and, when posttrain.method trained, metrics/posttrain.json
and its curves (loss, GRPO's reward, DPO's reward margin); writes metrics/report/ (README.md with the
predictor × metric table, 95% CIs, p-values, the per-language table and the charts; predictors.csv,
languages.csv; one SVG per chart, the same Vega-Lite charts as `dvc plots show`) and
metrics/report.json (how many predictors, languages and charts it drew). Then, measured and not a
DVC output, the accuracy-against-latency view metrics/timing/report/ (nep.evaluate.latency_report).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from nep.evaluate import latency_report
from nep.evaluate.report import build_report, judge_label, provenance
from nep.util import paths
from nep.util.errors import NepError
from nep.util.jsonl import write_metrics

METRICS = paths.metrics("report")


def nep_commit() -> str | None:
    """The last commit that changed nep's code (`git log -1 -- nep stages`), marked when nep/ or
    stages/ have uncommitted changes; None outside a git checkout. Not HEAD: committing the results
    of a run moves HEAD, and a fresh clone of that commit must write the same report (and dvc.lock)."""
    last = subprocess.run(["git", "log", "-1", "--format=%H", "--", "nep", "stages"], capture_output=True, text=True)
    if last.returncode != 0 or not last.stdout.strip():
        return None
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "nep", "stages"], capture_output=True, text=True)
    return last.stdout.strip() + (" + uncommitted changes in nep/ or stages/" if dirty.stdout.strip() else "")


def sizes() -> dict[str, Any]:
    """Records ingested and kept by the filter, train and test examples, the split strategy and its
    leakage counts."""
    found: dict[str, Any] = {}
    for stage, key, name in (("ingest", "records_out", "records"), ("filter", "records_out", "filtered"),
                             ("split", "train", "train"), ("split", "test", "test"), ("split", "strategy", "strategy"),
                             *(("split", f"leakage.{k}", f"leakage.{k}") for k in ("next_version", "edit", "window"))):
        try:
            found[name] = json.loads(paths.metrics(stage).read_text())[key]
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def posttrain_metrics(method: str) -> dict[str, Any] | None:
    """metrics/posttrain.json when posttrain.method trained, else None (no section)."""
    if method == "none":
        return None
    try:
        metrics = json.loads(paths.metrics("posttrain").read_text())
    except (OSError, ValueError) as e:
        raise NepError(f"{paths.metrics('posttrain')}: cannot read it ({e}); run `dvc repro posttrain`") from None
    return metrics.get("posttraining", metrics)  # the stage nests its keys (`dvc exp show` columns)


def judge_backend() -> tuple[str, str | None]:
    from nep.config.params import load_params

    judge = load_params("judge")
    return judge["backend"], judge["model"] if judge["backend"] == "openai" else None


def run(*, out_dir: Path = paths.REPORT, metrics_path: Path = METRICS) -> dict[str, Any]:
    """Write the report and its counts; return the counts."""
    from nep.config.params import load_params

    params = {"ingest": load_params("ingest"), "label": load_params("label"), "process": load_params("process"),
              "split": load_params("split"), "finetune": load_params("finetune"),
              "posttrain": load_params("posttrain"), "generate": load_params("generate"),
              "judge": load_params("judge"), "evaluate": load_params("evaluate")}
    judge = params["judge"]
    metrics = build_report(out_dir, about=provenance(params, commit=nep_commit(), sizes=sizes()),
                           posttrain=posttrain_metrics(params["posttrain"]["method"]),
                           judge=judge_label(judge["backend"], judge["model"] if judge["backend"] == "openai" else None))
    write_metrics(metrics_path, metrics)
    return metrics


def main() -> None:
    print(run())  # a known failure (NepError) is one line: run_main
    # beside the report, measured (not a DVC output): latency against this evaluation's accuracy
    rows = [r for r in latency_report.refresh(judge_label(*judge_backend())) if r["machine"]]
    if rows:
        print(f"{latency_report.OUT_DIR}/: " + "; ".join(latency_report.summary_line(r) for r in rows))


def banner() -> None:
    from nep.util.console import banner as show

    show("report", f"write {paths.REPORT}/ (tables, charts, provenance)", [paths.metrics("evaluate")])


if __name__ == "__main__":
    from nep.util.cli import run_main

    run_main(main, "report", banner=banner)
