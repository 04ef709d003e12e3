"""Stage judge: is each predicted next version right? One run per predictor.

Run: `python -m stages.judge --predictor NAME` (reads `params.yaml: judge:`), or `dvc repro judge`.
`judge.backend`: `rules` (offline: exact, whitespace-insensitive or syntax-tree-equivalent to the
ground truth) or `openai` (an LLM judges whether the prediction is a reasonable next edit; any
OpenAI-compatible endpoint); see nep.evaluate.judges. Reads data/generate/NAME.jsonl; writes
data/judge/NAME.jsonl (id, judgment 1/0/null, reason), metrics/judge/NAME.json and the measured
times to metrics/timing/judge/NAME.json.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from nep.config.params import load_section
from nep.config.schema import Judge
from nep.evaluate.judges import judge_file
from nep.util import paths
from nep.util.console import banner
from nep.util.errors import NepError
from nep.util.jsonl import write_metrics


def run(cfg: Judge, *, predictor: str, input_path: Path | None = None, output_path: Path | None = None,
        metrics_path: Path | None = None, timing_path: Path | None = None) -> dict[str, Any]:
    """Judge data/generate/<predictor>.jsonl; write judgments, metrics and timing; return the metrics.
    Raises TooManyFailures after writing them when more judgments than `max_failure_rate` stayed null."""
    report = judge_file(input_path or paths.generations(predictor), output_path or paths.judgments(predictor),
                        cfg, desc=f"judge {predictor}")
    metrics = {"predictor": predictor, **report.metrics}
    write_metrics(metrics_path or paths.metrics("judge", predictor), metrics)
    write_metrics(timing_path or paths.timing("judge", predictor), report.timing)
    report.check()
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictor", required=True, help="a name under generate.predictors")
    args = parser.parse_args()
    cfg = load_section("judge")
    banner(f"judge@{args.predictor}", f"judge each prediction against the ground truth ({cfg.backend} judge)",
           [paths.generations(args.predictor)])
    try:
        print(run(cfg, predictor=args.predictor))
    except NepError as e:  # a missing key or input, an unreachable endpoint, too many failures
        if e.param and "." not in e.param:
            raise NepError(e.message, param=f"judge.{e.param}", hint=e.hint) from None
        raise


if __name__ == "__main__":
    from nep.util.cli import run_main

    run_main(main, "judge", resumable=True)
