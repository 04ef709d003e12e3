"""Tolerated generation failures are asked again by the next plain `dvc repro`.

A predictor with `max_failure_rate` above 0 may finish with some answers failed (an endpoint that
timed out): generate@P writes them as unextracted records, and DVC locks the stage. So that the
next `dvc repro` asks them again without `-f`, each generate@P depends on a small file,
`data/retry/P.json`, that holds its failures:

- generate@P writes it when it ends: `{"failed": [ids]}`, `{"failed": []}` without failures. DVC
  saves a stage's dependencies after its command, so dvc.lock holds what generate@P left there.
- The `retry` stage runs at every `dvc repro` (`always_changed`, a fraction of a second, before
  every generate@P) and, where the list is not empty, adds `"retry": true`. The file then differs
  from dvc.lock, so generate@P runs again: it resumes from its checkpoint (kept while failures
  remain), asks only the failures, and writes the list anew. Once none remain the file is
  `{"failed": []}` again, as after a run without failures: dvc.lock and the outputs are those of
  an uninterrupted run, and later `dvc repro`s skip generate@P.

Nothing failed: the retry stage leaves every file as it is, and `dvc repro` runs no generation.
It also writes the file of a predictor that has none yet and removes those of predictors no
longer in `generate.predictors`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nep.util.jsonl import atomic_file


def read_state(path: Path) -> dict[str, Any] | None:
    """The file's content, None when it is missing or not what write_failures writes."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return state if isinstance(state, dict) and isinstance(state.get("failed"), list) else None


def write_failures(path: str | Path, failed: list[str]) -> None:
    """generate@P's last word: the ids of the failures it tolerated (test-set order), [] for none."""
    with atomic_file(path) as f:
        f.write(json.dumps({"failed": failed}, ensure_ascii=False) + "\n")


def mark(folder: Path, names: Iterable[str]) -> dict[str, int]:
    """The retry stage: for each predictor, its file marked for a retry when failures remain,
    created empty when missing; files of other predictors removed. Returns {name: failures to ask}
    for the predictors marked."""
    names = list(names)
    marked = {}
    for name in names:
        path = folder / f"{name}.json"
        state = read_state(path)
        if state is None:  # a new predictor (or a damaged file): nothing known to have failed
            write_failures(path, [])
        elif state["failed"]:
            marked[name] = len(state["failed"])
            if not state.get("retry"):
                with atomic_file(path) as f:
                    f.write(json.dumps({**state, "retry": True}, ensure_ascii=False) + "\n")
    if folder.is_dir():
        for stale in folder.glob("*.json"):
            if stale.stem not in names:
                stale.unlink()
    return marked
