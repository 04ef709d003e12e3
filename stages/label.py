"""Stage label: mark each filtered record relevant (`label` 1) or not (0), with a `label_reason`.

Run: `python -m stages.label` (reads `params.yaml: label:`), or `dvc repro label`.
`label.backend`: `all` (everything relevant), `heuristic` (the last chunk shares an identifier
with the earlier chunks) or `openai` (an LLM judges relevance, nep.data.relevance; a failed call leaves
`label` null); see nep.data.label. Writes data/label/commits.jsonl (input fields + `label`,
`label_reason`), metrics/label.json and the measured times to metrics/timing/label.json.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nep.config.params import load_section
from nep.config.schema import Label
from nep.data.label import label_file
from nep.util import paths
from nep.util.errors import NepError
from nep.util.jsonl import write_metrics

METRICS, TIMING = paths.metrics("label"), paths.timing("label")


def run(cfg: Label, *, input_path: Path = paths.FILTER, output_path: Path = paths.LABEL,
        metrics_path: Path = METRICS, timing_path: Path = TIMING) -> dict[str, Any]:
    """Label `input_path`; write the records, metrics and timing; return the metrics. Raises
    TooManyFailures after writing them when more labels than `max_failure_rate` stayed null."""
    report = label_file(input_path, output_path, cfg)
    write_metrics(metrics_path, report.metrics)
    write_metrics(timing_path, report.timing)
    report.check()
    return report.metrics


def main() -> None:
    try:
        print(run(load_section("label")))
    except NepError as e:  # a missing key or input, an unreachable endpoint, too many failures
        if e.param and "." not in e.param:
            raise NepError(e.message, param=f"label.{e.param}", hint=e.hint) from None
        raise


def banner() -> None:
    from nep.util.console import banner as show

    show("label", f"label each commit relevant or not ({load_section('label').backend} labeler)", [paths.FILTER])


if __name__ == "__main__":
    from nep.util.cli import run_main

    run_main(main, "label", resumable=True, banner=banner)
