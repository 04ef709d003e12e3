"""Filter throughput: nep.data.filter against the paper scripts' straightforward approach.

Run: `python -m benchmarks.filter_throughput [--records 3000] [--repo PATH]`.

Records are mined with nep's git source. By default the repository is built once (under
.cache/nep/bench/) from real code history available offline: one commit per installed CPython
version (3.6 → 3.13, via pyenv), each holding that version's standard library, so every record is a
real file's change between two Python releases. Pass `--repo` to mine any other repository.

The baseline does what the paper's scripts do: one `datasets.Dataset.filter` pass per check, tokens
counted for every record that passes the character check, and the difflib diff recomputed (and
parsed into chunks) in every diff-based check. Both must keep exactly the same records. The end to
end measurement (ingest + filter through `dvc repro`) is benchmarks/data_path.py.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

from nep.config.schema import Filter
from nep.data.filter import filter_records, paper_filter
from nep.data.sources.git import git_records
from nep.data.tokens import get_encoding

BENCH_DIR = Path(".cache/nep/bench")


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


def baseline(records: list[dict], config: Filter) -> list[dict]:
    """The paper scripts' way: a datasets.filter pass per check, the diff text computed once and
    parsed again in each check (benchmarks/paper_reference.py has the checks)."""
    import datasets

    from benchmarks.paper_reference import chunk_type, diff_runs, paper_diff, window_ok

    enc = get_encoding(config.encoding)

    def tokens_ok(r):
        try:
            return 2 * len(enc.encode(r["old_contents"] + r["new_contents"])) <= config.max_tokens
        except ValueError:  # special-token text: the paper's encode refuses it
            return False

    ds = datasets.Dataset.from_list(records)
    ds = ds.filter(lambda r: len(r["old_contents"]) + len(r["new_contents"]) <= config.max_chars)
    ds = ds.filter(tokens_ok)
    ds = ds.map(lambda r: {"diff": paper_diff(r)})
    ds = ds.filter(lambda r: len(diff_runs(r["diff"])) != 1)
    ds = ds.filter(lambda r: all(a + b <= config.max_chunk_lines for a, b in diff_runs(r["diff"])))
    ds = ds.filter(lambda r: window_ok(r["diff"], config.max_window_lines))
    ds = ds.filter(lambda r: all(chunk_type(*run) in config.edit_types for run in diff_runs(r["diff"])))
    return ds.remove_columns("diff").to_list()


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
    config = paper_filter(edit_types=tuple(args.edit_types.split(",")))
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
    print(f"{'nep.data.filter':<34}{ours_s:>10.2f}{len(records) / ours_s:>12.0f}")
    print(f"speed-up: {base_s / ours_s:.1f}x, same {len(ours)} survivors")


if __name__ == "__main__":
    main()
