"""Stage process: turn relevant commit records into next-edit training examples.

Run: `python -m stages.process` (reads `params.yaml: process:`), or `dvc repro process`.
Keeps records labeled 1, builds the current version (the new file with its last chunk reverted,
nep.edits.current_version) and the training text (nep.prompts). Writes data/process/examples.jsonl
and metrics/process.json (examples out, records dropped per reason).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nep.edits import compute_chunks, current_version
from nep.jsonl import flat_counts, read_jsonl, write_jsonl, write_metrics
from nep.params import load_params
from nep.prompts import build_training_text, example_id
from nep.records import RecordError, validate_commit

INPUT = Path("data/label/commits.jsonl")
OUTPUT = Path("data/process/examples.jsonl")
METRICS = Path("metrics/process.json")


def build_examples(records: Iterable[dict[str, Any]], drops: Counter) -> Iterator[dict[str, Any]]:
    """Processed examples of the relevant records, in input order; the others counted in `drops`."""
    seen: set[str] = set()
    for obj in records:
        if "label" not in obj:
            drops["missing_label"] += 1
            continue
        label = obj["label"]
        if label is None:
            drops["label_null"] += 1
            continue
        if label not in (0, 1) or isinstance(label, bool):
            drops["bad_label"] += 1
            continue
        if label == 0:
            drops["not_relevant"] += 1
            continue
        try:
            r = validate_commit(obj)
        except RecordError as e:
            drops[e.reason] += 1
            continue
        chunks = compute_chunks(r.old_contents, r.new_contents)
        if not chunks:
            drops["no_chunk"] += 1
            continue
        current = current_version(r.old_contents, r.new_contents, chunks)
        if current == r.old_contents:
            drops["no_edit_history"] += 1  # a single chunk: nothing precedes the next edit
            continue
        eid = example_id(r.repos, r.commit, r.old_file, r.new_file)
        if eid in seen:
            drops["duplicate"] += 1
            continue
        seen.add(eid)
        timestamp = obj.get("timestamp")
        text = build_training_text(r.old_contents, current, r.new_contents, path=r.new_file)
        yield {
            "id": eid,
            "repos": r.repos,
            "commit": r.commit,
            "path": r.new_file,
            "language": r.lang,
            "timestamp": timestamp if isinstance(timestamp, int) and not isinstance(timestamp, bool) else None,
            "original": r.old_contents,
            "current": current,
            "next": r.new_contents,
            "prompt": text.prompt,
            "completion": text.completion,
            "text": text.text,
        }


def run(*, input_path: Path = INPUT, output_path: Path = OUTPUT, metrics_path: Path = METRICS) -> dict[str, Any]:
    """Process `input_path`; write the examples and metrics; return the metrics."""
    drops: Counter = Counter()
    n = write_jsonl(output_path, build_examples(read_jsonl(input_path, drops), drops))
    metrics = {"records_in": n + sum(drops.values()), "examples_out": n, **flat_counts("dropped", drops)}
    write_metrics(metrics_path, metrics)
    return metrics


def main() -> None:
    print(run(**load_params("process")))


if __name__ == "__main__":
    main()
