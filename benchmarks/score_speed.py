"""`nep score` on the paper's test-set size: 210 NEP-schema rows (each an add-only commit of two
chunks in a file of `--lines` lines, the current version holding the first chunk, as the paper's
test rows do) and predictions files keyed as the paper's `generate_api.py` writes them (commit and
file), timed end to end as a user runs it (a fresh `python -m nep score` process).

    python -m benchmarks.score_speed [--rows 210] [--lines 200] [--files 2]

Writes the rows and predictions under benchmarks/results/score/ (git-ignored) and prints the
wall and CPU time of each run (and the machine's load), then the table of the last one.
"""

from __future__ import annotations

import argparse
import difflib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

NEXT = "<|next_version|>\n"


def nep_row(k: int, lines: int) -> dict:
    """An NEP-schema row: a file of `lines` lines, two added lines; the current version has the first."""
    base = [f"value_{k}_{i} = compute({i}, scale={k % 7})\n" for i in range(lines)]
    a, b = lines // 4, (3 * lines) // 4
    new = list(base)
    new.insert(b, f"check(value_{k}_{b - 1})\n")
    new.insert(a, f"check(value_{k}_{a - 1})\n")
    current = list(base)
    current.insert(a, f"check(value_{k}_{a - 1})\n")
    old, new_text, cur = "".join(base), "".join(new), "".join(current)
    path = f"pkg/module_{k}.py"
    diff = "\n".join(difflib.unified_diff(old.splitlines(), cur.splitlines(), lineterm="", fromfile=path, tofile=path))
    text = f"<|original_code|>\n{old}\n<|edits_diff|>\n{diff}\n<|current_version|>\n{cur}\n{NEXT}{new_text}\n"
    return {"commit": f"{k:040x}", "message": "check the values", "old_file": path, "new_file": path, "status": "M",
            "old_contents": old, "new_contents": new_text, "current_contents": cur, "text": text}


def answer(r: dict, variant: int) -> str:
    """One of four answers: the next version, no edit, the right place with a wrong line, a far edit."""
    new, cur = r["new_contents"], r["current_contents"]
    if variant == 0:
        return new
    if variant == 1:
        return cur
    if variant == 2:
        return new.replace("check(", "verify(")
    return "import os\n" + cur


def build(folder: Path, rows: int, lines: int, files: int) -> tuple[Path, list[Path]]:
    """The test rows and `files` predictions files under `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    test = [nep_row(k, lines) for k in range(rows)]
    test_path = folder / "test.jsonl"
    test_path.write_text("".join(json.dumps(r) + "\n" for r in test))
    outs = []
    for f in range(files):
        path = folder / f"model_{f}.jsonl"
        path.write_text("".join(json.dumps({"commit": r["commit"], "new_file": r["new_file"],
                                            "output": answer(r, (k * (f + 1)) % 4)}) + "\n"
                                for k, r in enumerate(test)))
        outs.append(path)
    return test_path, outs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=210)
    parser.add_argument("--lines", type=int, default=200)
    parser.add_argument("--files", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    folder = Path("benchmarks/results/score")
    test, outs = build(folder, args.rows, args.lines, args.files)
    cmd = [sys.executable, "-m", "nep", "score", "--test", str(test), "--predictions", *map(str, outs),
           "--output", str(folder / "out")]
    for _ in range(args.repeat):
        before = os.times()
        start = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - start
        after = os.times()
        cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
        if done.returncode:
            sys.exit(done.stderr)
        load = os.getloadavg()[0]
        print(f"{args.rows} rows x {args.files} files, {args.lines}-line files: {wall:.1f} s wall, {cpu:.1f} s CPU "
              f"(load average {load:.1f} on {os.cpu_count()} cores)")
    print(done.stdout, end="")


if __name__ == "__main__":
    main()
