"""Filter throughput: nep.filters against the paper scripts' straightforward approach.

Run: `python -m benchmarks.filter_throughput [--records 3000] [--repo PATH]`.

Records are mined with nep's git source. By default the repository is built once (under
.cache/nep/bench/) from real code history available offline: one commit per installed CPython
version (3.6 → 3.13, via pyenv), each holding that version's standard library, so every record is a
real file's change between two Python releases. Pass `--repo` to mine any other repository.

The baseline does what the paper's scripts do: one `datasets.Dataset.filter` pass per check, tokens
counted for every record that passes the character check, and the difflib diff recomputed (and
parsed into chunks) in every diff-based check. Both must keep exactly the same records.
"""

from __future__ import annotations

import argparse
import difflib
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from nep.filters import FilterConfig, filter_records
from nep.sources import git_records
from nep.tokens import get_encoding

BENCH_DIR = Path(".cache/nep/bench")
HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")


def stdlib_history(dest: Path) -> Path:
    """A git repository with one commit per installed CPython 3.x standard library."""
    if (dest / ".git").exists():
        return dest
    roots = sorted(
        (p for p in Path.home().glob(".pyenv/versions/3.*/lib/python3.*") if (p / "os.py").exists()),
        key=lambda p: tuple(int(x) for x in p.name.removeprefix("python").split(".")),
    )
    if len(roots) < 2:
        sys.exit("no pyenv CPython versions found: pass --repo PATH with a repository to mine")
    dest.mkdir(parents=True)
    env_git = ["git", "-C", str(dest), "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    subprocess.run([*env_git, "init", "-q", "-b", "main"], check=True)
    for i, root in enumerate(roots):
        lib = dest / "Lib"
        shutil.rmtree(lib, ignore_errors=True)
        shutil.copytree(root, lib, ignore=shutil.ignore_patterns("site-packages", "__pycache__", "*.pyc", "*.so"))
        subprocess.run([*env_git, "add", "-A"], check=True, capture_output=True)
        date = f"2020-01-{i + 1:02d}T00:00:00+00:00"
        subprocess.run([*env_git, "commit", "-q", "-m", f"Python {root.name}", f"--date={date}"], check=True,
                       env={"GIT_COMMITTER_DATE": date, "PATH": "/usr/bin:/bin:/usr/local/bin"})
    return dest


def diff_chunks(old: str, new: str) -> list[tuple[int, int, int, int]]:
    """Chunks (runs of -/+ lines) parsed from difflib.unified_diff: (old_start, removed, new_start, added)."""
    chunks: list[tuple[int, int, int, int]] = []
    run: list[int] | None = None
    o = n = 0
    lines = difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True), n=3)
    for i, line in enumerate(lines):
        if i < 2:  # the ---/+++ file header
            continue
        m = HUNK.match(line) if line.startswith("@@") else None
        if m or line[:1] not in "+-":
            if run is not None:
                chunks.append((run[0], run[1], run[2], run[3]))
                run = None
            if m:  # 1-based starts; an empty range names the line before it
                o = int(m.group(1)) - (0 if m.group(2) == "0" else 1)
                n = int(m.group(3)) - (0 if m.group(4) == "0" else 1)
            else:
                o, n = o + 1, n + 1
            continue
        if run is None:
            run = [o, 0, n, 0]
        if line[0] == "-":
            run[1] += 1
            o += 1
        else:
            run[3] += 1
            n += 1
    if run is not None:
        chunks.append((run[0], run[1], run[2], run[3]))
    return chunks


def baseline(records: list[dict], config: FilterConfig) -> list[dict]:
    """The paper scripts' way: a datasets.filter pass per check, the diff recomputed in each."""
    import datasets

    enc = get_encoding(config.encoding)
    ds = datasets.Dataset.from_list(records)
    ds = ds.filter(lambda r: len(r["old_contents"]) + len(r["new_contents"]) <= config.max_chars)
    ds = ds.filter(lambda r: 2 * len(enc.encode_ordinary(r["old_contents"] + r["new_contents"])) <= config.max_tokens)
    ds = ds.filter(lambda r: len(diff_chunks(r["old_contents"], r["new_contents"])) >= config.min_chunks)

    def types_ok(r):
        types = {"add" if c[1] == 0 else "delete" if c[3] == 0 else "replace"
                 for c in diff_chunks(r["old_contents"], r["new_contents"])}
        return types <= set(config.edit_types)

    ds = ds.filter(types_ok)
    ds = ds.filter(lambda r: all(c[1] + c[3] <= config.max_chunk_lines
                                 for c in diff_chunks(r["old_contents"], r["new_contents"])))

    def window_ok(r):
        cs = diff_chunks(r["old_contents"], r["new_contents"])
        old_window = cs[-1][0] + cs[-1][1] - cs[0][0]
        new_window = cs[-1][2] + cs[-1][3] - cs[0][2]
        return max(old_window, new_window) <= config.max_window_lines

    ds = ds.filter(window_ok)
    return ds.to_list()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=3000)
    parser.add_argument("--repo", type=Path, default=None)
    parser.add_argument("--edit-types", default="add", help="comma-separated filter.edit_types")
    args = parser.parse_args()

    repo = args.repo or stdlib_history(BENCH_DIR / "cpython-stdlib-history")
    drops: Counter = Counter()
    records = list(git_records([str(repo)], drops=drops, max_file_bytes=10_000_000, progress=False))[: args.records]
    if not records:
        sys.exit(f"{repo}: no record mined ({dict(drops)})")
    config = FilterConfig(edit_types=tuple(args.edit_types.split(",")))
    get_encoding(config.encoding)  # load the vocabulary outside the timings

    start = time.perf_counter()
    ours = filter_records(records, config).kept
    ours_s = time.perf_counter() - start
    start = time.perf_counter()
    theirs = baseline(records, config)
    base_s = time.perf_counter() - start

    key = [(r["commit"], r["new_file"]) for r in ours]
    assert key == [(r["commit"], r["new_file"]) for r in theirs], "different survivors"
    print(f"repository: {repo}  records: {len(records)}  survivors: {len(ours)}  edit_types: {args.edit_types}")
    print(f"{'implementation':<34}{'seconds':>10}{'records/s':>12}")
    print(f"{'baseline (datasets.filter/check)':<34}{base_s:>10.2f}{len(records) / base_s:>12.0f}")
    print(f"{'nep.filters':<34}{ours_s:>10.2f}{len(records) / ours_s:>12.0f}")
    print(f"speed-up: {base_s / ours_s:.1f}x, same {len(ours)} survivors")


if __name__ == "__main__":
    main()
