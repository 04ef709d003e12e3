"""Stage process: turn relevant commit records into next-edit training examples.

Run: `python -m stages.process` (reads `params.yaml: process:`), or `dvc repro process`.
Keeps records labeled 1, optionally cuts old and new to the edit window plus `context_lines` lines
around it (0 keeps whole files), builds the current version (the new file with its last chunk
reverted, nep.edits.current_version) and the training text (nep.prompts). Writes
data/process/examples.jsonl and metrics/process.json (examples out, records dropped per reason).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nep.edits import compute_chunks, current_version, trim_to_window
from nep.jsonl import flat_counts, read_jsonl, write_jsonl, write_metrics
from nep.params import load_params
from nep.prompts import build_training_text, example_id
from nep.records import RecordError, validate_commit

INPUT = Path("data/label/commits.jsonl")
OUTPUT = Path("data/process/examples.jsonl")
METRICS = Path("metrics/process.json")


def build_examples(
    records: Iterable[dict[str, Any]], drops: Counter, *, context_lines: int = 0
) -> Iterator[dict[str, Any]]:
    """Processed examples of the relevant records, in input order; the others counted in `drops`.
    With `context_lines` > 0, each file is cut to its edit window plus that many lines each side."""
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
        old, new = r.old_contents, r.new_contents
        if context_lines > 0:
            old, new = trim_to_window(old, new, context_lines, chunks)
            chunks = compute_chunks(old, new)
        if len(chunks) < 2:
            drops["no_edit_history"] += 1  # a single chunk: nothing precedes the next edit
            continue
        current = current_version(old, new, chunks)
        eid = example_id(r.repos, r.commit, r.old_file, r.new_file)
        if eid in seen:
            drops["duplicate"] += 1
            continue
        seen.add(eid)
        timestamp = obj.get("timestamp")
        text = build_training_text(old, current, new, path=r.new_file)
        yield {
            "id": eid,
            "repos": r.repos,
            "commit": r.commit,
            "path": r.new_file,
            "language": r.lang,
            "timestamp": timestamp if isinstance(timestamp, int) and not isinstance(timestamp, bool) else None,
            "original": old,
            "current": current,
            "next": new,
            "prompt": text.prompt,
            "completion": text.completion,
            "text": text.text,
        }


def run(
    *, context_lines: int = 0, input_path: Path = INPUT, output_path: Path = OUTPUT, metrics_path: Path = METRICS
) -> dict[str, Any]:
    """Process `input_path`; write the examples and metrics; return the metrics."""
    drops: Counter = Counter()
    examples = build_examples(read_jsonl(input_path, drops), drops, context_lines=context_lines)
    n = write_jsonl(output_path, examples)
    metrics = {"records_in": n + sum(drops.values()), "examples_out": n, **flat_counts("dropped", drops)}
    write_metrics(metrics_path, metrics)
    return metrics


def main() -> None:
    print(run(**load_params("process")))


if __name__ == "__main__":
    main()
