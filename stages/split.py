"""Stage split: split examples into train and test sets without leakage (nep.data.split).

Run: `python -m stages.split` (reads `params.yaml: split:`), or `dvc repro split`.
Reads data/process/examples.jsonl (or `split.external_train`) and, with `strategy: external`,
`split.external_test` (nep's processed JSONL, or the NEP dataset: a file, a directory or the hub id);
writes data/split/train.jsonl, data/split/test.jsonl and metrics/split.json (sizes per side,
repositories and commits per side, the strategy used, drops, the external sets' counts and the
leakage counts, nep/data/leakage.py; the log shows examples of each kind of leakage).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nep.config.params import load_section
from nep.config.schema import Split
from nep.data.split import split_dataset
from nep.util import paths
from nep.util.jsonl import write_jsonl, write_metrics

METRICS = paths.metrics("split")


def run(
    cfg: Split, *, input_path: Path = paths.PROCESS, train_path: Path = paths.TRAIN,
    test_path: Path = paths.TEST, metrics_path: Path = METRICS,
) -> dict[str, Any]:
    """Split; write both sides and the metrics; return the metrics."""
    result, metrics = split_dataset(cfg, examples_path=input_path)
    write_jsonl(train_path, result.train)
    write_jsonl(test_path, result.test)
    write_metrics(metrics_path, metrics)
    return metrics


def main() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")  # the leakage examples
    print(run(load_section("split")))  # a known failure (NepError) is one line: run_main


def banner() -> None:
    from nep.util.console import banner as show
    from nep.util.console import describe

    cfg = load_section("split")
    # what is read: the process stage's examples, or the external sets that stand in for them
    inputs = [cfg.external_train or paths.PROCESS, *([cfg.external_test] if cfg.external_test else [])]
    shown = [describe(p) if Path(p).exists() or p == paths.PROCESS else f"{p} (hub)" for p in inputs]
    show("split", f"split the examples into train and test ({cfg.strategy})", ", ".join(shown))


if __name__ == "__main__":
    from nep.util.cli import run_main

    run_main(main, "split", banner=banner)
