"""Stage split: split examples into train and test sets without leakage (nep.data.split).

Run: `python -m stages.split` (reads `params.yaml: split:`), or `dvc repro split`.
Reads data/process/examples.jsonl (or `split.external_train`) and, with `strategy: external`,
`split.external_test` (nep's processed JSONL, or the NEP dataset: a file, a directory or the hub id);
writes data/split/train.jsonl, data/split/test.jsonl and metrics/split.json (sizes per side,
repositories and commits per side, the strategy used, drops and the external sets' counts).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nep.config.params import load_params
from nep.data.split import SplitError, split_dataset
from nep.util import paths
from nep.util.jsonl import InputError, write_jsonl, write_metrics

METRICS = paths.metrics("split")


def run(
    *, strategy: str, test_fraction: float, seed: int, external_test: str, external_train: str,
    external_revision: str, input_path: Path = paths.PROCESS, train_path: Path = paths.TRAIN,
    test_path: Path = paths.TEST, metrics_path: Path = METRICS,
) -> dict[str, Any]:
    """Split; write both sides and the metrics; return the metrics."""
    result, metrics = split_dataset(
        strategy=strategy, test_fraction=test_fraction, seed=seed, external_test=external_test,
        external_train=external_train, external_revision=external_revision, examples_path=input_path,
    )
    write_jsonl(train_path, result.train)
    write_jsonl(test_path, result.test)
    write_metrics(metrics_path, metrics)
    return metrics


def main() -> None:
    try:
        print(run(**load_params("split")))
    except (InputError, SplitError) as e:  # bad or unreachable input: one line, no traceback
        raise SystemExit(f"split: {e}") from None


def banner() -> None:
    from nep.util.console import banner as show

    show("split", f"split the examples into train and test ({load_params('split')['strategy']})", [paths.PROCESS])


if __name__ == "__main__":
    from nep.util.errors import run_main

    run_main(main, "split", banner=banner)
