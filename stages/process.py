"""Stage process: turn relevant commit records into next-edit examples (nep.core.examples).

Run: `python -m stages.process` (reads `params.yaml: process:`), or `dvc repro process`.
Reads data/label/commits.jsonl; writes data/process/examples.jsonl and metrics/process.json
(records in, examples out, records dropped per reason; with an answer format other than the
paper's, `process.format`, the examples whose next version it cannot write, per reason).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nep.config.params import load_section
from nep.config.schema import Process
from nep.core.examples import build_examples
from nep.core.formats import AnswerFormat, Unrepresentable, answer_format
from nep.util import paths
from nep.util.jsonl import flat_counts, read_jsonl, write_jsonl, write_metrics

METRICS = paths.metrics("process")


def unwritable_counted(examples: Iterable[dict[str, Any]], fmt: AnswerFormat, counts: Counter) -> Iterator[dict[str, Any]]:
    """`examples` as they are, each whose next version `fmt` cannot write counted by reason."""
    for example in examples:
        try:
            fmt.completion(example)
        except Unrepresentable as e:
            counts[e.reason] += 1
        yield example


def run(
    cfg: Process, *, input_path: Path = paths.LABEL, output_path: Path = paths.PROCESS,
    metrics_path: Path = METRICS,
) -> dict[str, Any]:
    """Process `input_path`; write the examples and metrics; return the metrics."""
    drops: Counter = Counter()
    fmt = answer_format(cfg.format)
    unwritable: Counter = Counter()
    examples = build_examples(read_jsonl(input_path, drops), drops, context_lines=cfg.context_lines)
    n = write_jsonl(output_path, examples if fmt.is_paper else unwritable_counted(examples, fmt, unwritable))
    metrics = {"records_in": n + sum(drops.values()), "examples_out": n, **flat_counts("dropped", drops)}
    if not fmt.is_paper:  # examples whose next version the answer format cannot write (finetune drops them)
        metrics[f"format.{fmt.name}.writable"] = n - sum(unwritable.values())
        metrics.update(flat_counts(f"format.{fmt.name}.unwritable", unwritable))
    write_metrics(metrics_path, metrics)
    return metrics


def main() -> None:
    print(run(load_section("process")))  # a known failure (NepError) is one line: run_main


def banner() -> None:
    from nep.util.console import banner as show

    show("process", "turn the relevant commits into prompt / next-version examples", [paths.LABEL])


if __name__ == "__main__":
    from nep.util.cli import run_main

    run_main(main, "process", banner=banner)
