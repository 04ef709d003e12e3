"""Where a blocks-answering model's copies point: for each answer whose next version is the current
version unchanged (a "copy"), whether it is a no-op block (original lines = updated lines) and
whether that block sits on the lines the real next edit changes, against what a block of the same
length placed anywhere in the current version would hit by chance.

    python -m benchmarks.copy_locations --test data/split/test.jsonl \
        --answers data/generate/finetuned.jsonl [--out copy_locations.json]

"On the edit": the block's lines overlap the current version's lines the next edit replaces or
deletes, or, for an insertion, the line before or after it. "Within 3 lines": the same with the block
widened by 3 lines each side. "By chance": the expected count of blocks on the edit if each copy's
first block were placed uniformly at random among the places of its length (and the same for
"within 3 lines"). Reads answers in the
blocks format only (nep.core.formats.blocks).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def edit_lines(current: str, nxt: str) -> set[int]:
    """0-based lines of `current` the change to `nxt` touches (an insertion: the lines around it)."""
    from nep.core.edits import compute_chunks

    n = len(current.split("\n"))
    touched: set[int] = set()
    for c in compute_chunks(current, nxt):
        touched.update(range(c.old_start, c.old_end) if c.old_end > c.old_start else (c.old_start - 1, c.old_start))
    return {i for i in touched if 0 <= i < n}


def analyse(tests: dict[str, dict[str, Any]], records: list[dict[str, Any]]) -> dict[str, Any]:
    from nep.core.formats.blocks import _lines, _places, parse_blocks
    from nep.predictors.runner import is_copy

    out = {"answers": len(records), "copies": 0, "noop_blocks": 0, "located": 0, "on_edit": 0,
           "within_3_lines": 0, "on_edit_by_chance": 0.0, "within_3_lines_by_chance": 0.0}
    for r in records:
        ex = tests[r["id"]]
        current, nxt = ex["current"], ex["next"]
        if not is_copy({**r, "current": current}):
            continue
        out["copies"] += 1
        blocks = parse_blocks(r["raw_output"])
        if isinstance(blocks, str) or not blocks or any(o != u for o, u in blocks):
            continue
        out["noop_blocks"] += 1
        lines, original = _lines(current), blocks[0][0]
        places = _places(lines, original)
        if not places:
            continue
        out["located"] += 1
        touched = edit_lines(current, nxt)
        first, last = places[0], places[0] + max(len(original), 1) - 1
        out["on_edit"] += any(first <= k <= last for k in touched)
        out["within_3_lines"] += any(first - 3 <= k <= last + 3 for k in touched)
        size = last - first
        starts = range(max(len(lines) - size, 1))
        out["on_edit_by_chance"] += sum(any(s <= k <= s + size for k in touched) for s in starts) / len(starts)
        out["within_3_lines_by_chance"] += sum(any(s - 3 <= k <= s + size + 3 for k in touched)
                                               for s in starts) / len(starts)
    for key in ("on_edit_by_chance", "within_3_lines_by_chance"):
        out[key] = round(out[key], 1)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", default="data/split/test.jsonl")
    parser.add_argument("--answers", default="data/generate/finetuned.jsonl")
    parser.add_argument("--out")
    args = parser.parse_args()

    from nep.util.jsonl import read_jsonl

    tests = {t["id"]: t for t in read_jsonl(args.test)}
    result = {"test": args.test, "answers_file": args.answers, **analyse(tests, list(read_jsonl(args.answers)))}
    text = json.dumps(result, indent=1) + "\n"
    if args.out:
        Path(args.out).write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
