"""Stage split: split processed examples into train and test sets without leakage (nep.splits).

Run: `python -m stages.split` (reads `params.yaml: split:`), or `dvc repro split`.
Reads data/process/examples.jsonl; writes data/split/train.jsonl, data/split/test.jsonl and
metrics/split.json (sizes per side, repositories per side, the strategy used).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from nep.jsonl import InputError, flat_counts, read_jsonl, write_jsonl, write_metrics
from nep.params import load_params
from nep.splits import split_examples

INPUT = Path("data/process/examples.jsonl")
TRAIN = Path("data/split/train.jsonl")
TEST = Path("data/split/test.jsonl")
METRICS = Path("metrics/split.json")
NEEDED = ("id", "repos", "commit", "prompt", "completion")


def read_examples(path: Path, drops: Counter) -> list[dict[str, Any]]:
    examples = []
    for obj in read_jsonl(path, drops):
        if any(not isinstance(obj.get(k), str) for k in NEEDED):
            drops["bad_example"] += 1
            continue
        examples.append(obj)
    return examples


def run(*, strategy: str = "auto", test_fraction: float = 0.2, seed: int = 42, external_test: str = "",
        input_path: Path = INPUT, train_path: Path = TRAIN, test_path: Path = TEST,
        metrics_path: Path = METRICS) -> dict[str, Any]:
    """Split `input_path`; write both sides and the metrics; return the metrics."""
    drops: Counter = Counter()
    examples = read_examples(input_path, drops)
    if not examples:
        raise InputError(
            f"{input_path}: no example reached split. Likely causes: a shallow clone or a short history "
            "(git fetch --unshallow; mine more repositories in ingest.git.repos), filters too strict "
            "(see metrics/filter.json; e.g. filter.edit_types: [add, delete, replace]), or every record "
            "labeled irrelevant (metrics/label.json)."
        )
    external = None
    if strategy == "external":
        if not external_test:
            raise InputError("split.strategy is external but split.external_test is empty")
        external = read_examples(Path(external_test), drops)
        if not external:
            raise InputError(f"{external_test}: no valid processed example to use as the test set")
    result = split_examples(examples, strategy=strategy, test_fraction=test_fraction, seed=seed, external=external)
    if not result.train or not result.test:
        side = "test" if not result.test else "train"
        raise InputError(
            f"split ({result.strategy}) left the {side} set empty with {len(examples)} examples from "
            f"{len({e['repos'] for e in examples})} repositories and {len({e['commit'] for e in examples})} "
            "commits: mine more history or repositories, or relax the filters."
        )
    write_jsonl(train_path, result.train)
    write_jsonl(test_path, result.test)
    metrics = {
        "strategy": result.strategy,
        "train": len(result.train),
        "test": len(result.test),
        "test_share": round(len(result.test) / (len(result.train) + len(result.test)), 4),
        "repos.train": len({e["repos"] for e in result.train}),
        "repos.test": len({e["repos"] for e in result.test}),
        "commits.train": len({(e["repos"], e["commit"]) for e in result.train}),
        "commits.test": len({(e["repos"], e["commit"]) for e in result.test}),
        "dropped.leaked": result.leaked,
        **flat_counts("dropped", drops),
    }
    write_metrics(metrics_path, metrics)
    return metrics


def main() -> None:
    print(run(**load_params("split")))


if __name__ == "__main__":
    main()
