"""JSONL and metrics I/O shared by the stages. Bad lines are counted, never silently lost."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any


class InputError(RuntimeError):
    """Input that is unusable as a whole (missing file, no valid records)."""


def read_jsonl(path: str | Path, drops: Counter | None = None) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSONL file. Malformed lines and non-objects are counted in
    `drops` (reason → count) when given, else raise naming file and line."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: file not found")
    with path.open(encoding="utf-8", errors="strict", newline="") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                if drops is None:
                    raise InputError(f"{path}:{lineno}: malformed JSON ({e.msg})") from e
                drops["malformed_json"] += 1
                continue
            if not isinstance(obj, dict):
                if drops is None:
                    raise InputError(f"{path}:{lineno}: expected a JSON object")
                drops["not_an_object"] += 1
                continue
            yield obj


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Write records to `path` atomically (temp file + rename); return how many."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    n = 0
    with tmp.open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    os.replace(tmp, path)
    return n


def write_metrics(path: str | Path, metrics: dict[str, Any]) -> None:
    """Write a flat metrics JSON (sorted keys, stable diffs)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def flat_counts(prefix: str, counts: Counter | dict[str, int]) -> dict[str, int]:
    """{"a": 1} → {"prefix.a": 1}, for dropped-by-reason style metrics."""
    return {f"{prefix}.{k}": int(v) for k, v in sorted(counts.items())}
