"""Raw commits → filtered records, end to end through `dvc repro filter`, against the paper's
filter functions run serially (benchmarks/paper_reference.py) on the same JSONL file.

Run: `python -m benchmarks.data_path [--sizes 1,10] [--repeat 1] [--edit-types add|all] [--config paper|tokenize-all|keep-all]`.

The benchmark set is built once under .cache/nep/bench/ from real code history available offline: a
git repository with one commit per installed CPython standard library (pyenv's 2.7 and 3.6 → 3.13,
`Lib/` of each), mined by nep's git source (every modified .py file of every commit is a record)
into `commits-1x.jsonl`. Size k× repeats those records k times under k repository names, so every
copy is a distinct record with real contents. For each size, the script copies the project into a
temporary directory, points `ingest` at the file (`source: jsonl`) and measures:
- `dvc repro filter` (DVC's own work included: hashing, lock, cache) from scratch, and the
  reference's run (`python -m benchmarks.paper_reference FILE`), both as separate processes;
- a second, no-op `dvc repro filter`;
- the peak memory of each process tree (the sum of its processes' RSS, sampled every 50 ms).
Both must keep the same records. `--config tokenize-all` disables the cheap checks and makes every
record go through the tokenizer (`max_tokens: 2`); `keep-all` lets every record with a change
survive (memory independent of survivors); neither is compared with the reference.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / ".cache/nep/bench"
CONFIGS = {
    "paper": {},
    "tokenize-all": {"max_chars": 0, "max_tokens": 2, "min_chunks": 1, "max_chunk_lines": 10**9,
                     "max_window_lines": 10**9},
    "keep-all": {"max_chars": 0, "max_tokens": 0, "min_chunks": 1, "max_chunk_lines": 10**9,
                 "max_window_lines": 10**9},
}


def stdlib_roots() -> list[Path]:
    """The installed CPython standard libraries (pyenv), oldest version first."""
    roots = {}
    for p in Path.home().glob(".pyenv/versions/*/lib/python*"):
        if (p / "os.py").exists():
            version = tuple(int(x) for x in p.parent.parent.name.split(".")[:3] if x.isdigit())
            roots.setdefault(p.name, (version, p))
    return [p for _, p in sorted(roots.values())]


def history(dest: Path) -> Path:
    """The stdlib history repository (built once)."""
    if (dest / ".git").exists():
        return dest
    roots = stdlib_roots()
    if len(roots) < 2:
        sys.exit("fewer than two pyenv CPython versions found")
    dest.mkdir(parents=True)
    git = ["git", "-C", str(dest), "-c", "user.name=bench", "-c", "user.email=bench@example.com"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    for i, root in enumerate(roots):
        shutil.rmtree(dest / "Lib", ignore_errors=True)
        shutil.copytree(root, dest / "Lib", symlinks=True,
                        ignore=shutil.ignore_patterns("site-packages", "__pycache__", "*.pyc", "*.so", "*.a"))
        subprocess.run([*git, "add", "-A"], check=True, capture_output=True)
        date = f"2020-01-{i + 1:02d}T00:00:00+00:00"
        subprocess.run([*git, "commit", "-q", "-m", f"Standard library of Python {root.name}", f"--date={date}"],
                       check=True, env={**os.environ, "GIT_COMMITTER_DATE": date})
    return dest


def dataset(size: int) -> Path:
    """commits-<size>x.jsonl (built once)."""
    from collections import Counter

    from nep.data.sources.git import git_records

    one = BENCH / "commits-1x.jsonl"
    BENCH.mkdir(parents=True, exist_ok=True)
    if not one.exists():
        drops: Counter = Counter()
        tmp = one.with_suffix(".part")
        with tmp.open("w", encoding="utf-8") as f:
            for r in git_records([str(history(BENCH / "stdlib-history"))], drops=drops, max_file_bytes=10**8,
                                 progress=False):
                f.write(json.dumps(r, ensure_ascii=False) + "\n")
        tmp.rename(one)
    path = BENCH / f"commits-{size}x.jsonl"
    if not path.exists():
        tmp = path.with_suffix(".part")
        with tmp.open("w", encoding="utf-8") as out:
            for k in range(size):
                with one.open(encoding="utf-8") as f:
                    for line in f:
                        r = json.loads(line)
                        r["repos"] = f"{r['repos']}#{k}"
                        out.write(json.dumps(r, ensure_ascii=False) + "\n")
        tmp.rename(path)
    return path


def measured(cmd: list[str], cwd: Path) -> tuple[float, float, float, str]:
    """(wall seconds, CPU seconds, peak MiB of the process tree, stdout) of a command."""
    import resource

    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    env = {**os.environ, "TIKTOKEN_CACHE_DIR": str(ROOT / ".cache/nep/tiktoken")}  # one vocabulary copy for all
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    peak = 0
    out: list[str] = []
    import threading

    reader = threading.Thread(target=lambda: out.append(proc.stdout.read()))
    reader.start()
    root = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
            peak = max(peak, rss)
        except psutil.Error:
            pass
        time.sleep(0.05)
    reader.join()
    seconds = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if proc.returncode:
        sys.exit(f"{' '.join(cmd)} failed:\n{''.join(out)[-3000:]}")
    return seconds, cpu, peak / 2**20, "".join(out)


def keys(path: Path) -> list[tuple[str, str, str]]:
    """(repos, commit, new_file) of each record of a JSONL file, in order (streamed)."""
    with path.open(encoding="utf-8") as f:
        return [(r["repos"], r["commit"], r["new_file"]) for r in map(json.loads, f)]


def project(tmp: Path, source: Path, filter_params: dict) -> Path:
    dest = tmp / "project"
    anywhere = shutil.ignore_patterns(".git", ".cache", "__pycache__", ".pytest_cache", "tmp", "cache")
    top = {"data", "models", "dvc.lock", "metrics", "benchmarks"}  # pipeline outputs (nep/data/ is code)

    def ignore(directory: str, names: list[str]) -> set[str]:
        return anywhere(directory, names) | (top & set(names) if Path(directory) == ROOT else set())

    shutil.copytree(ROOT, dest, ignore=ignore)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["ingest"]["source"] = "jsonl"
    params["ingest"]["jsonl"]["paths"] = [str(source)]
    params["filter"].update(filter_params)
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["-c", "user.name=b", "-c", "user.email=b@b", "commit", "-qm", "bench"]):
        subprocess.run(["git", *args], cwd=dest, check=True, capture_output=True)
    return dest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1,10")
    parser.add_argument("--edit-types", default="all", choices=["add", "all"])
    parser.add_argument("--config", default="paper", choices=list(CONFIGS))
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--repeat", type=int, default=1, help="runs per size, nep and the reference alternating (medians)")
    args = parser.parse_args()
    edit_types = ["add"] if args.edit_types == "add" else ["add", "delete", "replace"]
    filter_params = {"edit_types": edit_types, **CONFIGS[args.config]}
    compare = args.config == "paper" and not args.no_reference
    print(f"config: {args.config}  edit_types: {edit_types}  cores: {psutil.cpu_count()}")
    print(f"load average before: {os.getloadavg()[0]:.1f}  (wall s / CPU s)")
    print(f"{'size':>5}{'records':>9}{'MB':>7}{'survivors':>10}{'nep s':>13}{'nep MiB':>9}{'no-op s':>12}"
          f"{'paper s':>13}{'paper MiB':>10}{'speed-up':>9}")
    for size in [int(s) for s in args.sizes.split(",")]:
        source = dataset(size)
        nep_runs, noop_runs, paper_runs = [], [], []
        for _ in range(args.repeat):  # nep and the reference alternate: machine drift hits both
            with tempfile.TemporaryDirectory() as tmp:
                dest = project(Path(tmp), source, filter_params)
                nep_runs.append(measured(["dvc", "repro", "filter"], dest))
                noop_runs.append(measured(["dvc", "repro", "filter"], dest))
                assert "Running stage 'filter'" not in noop_runs[-1][3], noop_runs[-1][3]
                survivors = json.loads((dest / "metrics/filter.json").read_text())["records_out"]
                records = json.loads((dest / "metrics/ingest.json").read_text())["records_out"]
                if compare:
                    cmd = [sys.executable, "-m", "benchmarks.paper_reference", str(source), "--edit-types",
                           ",".join(edit_types), "--out", str(Path(tmp) / "paper.jsonl")]
                    paper_runs.append(measured(cmd, ROOT))
                    assert keys(dest / "data/filter/commits.jsonl") == keys(Path(tmp) / "paper.jsonl"), "different survivors"
        nep_s, nep_cpu, nep_mib = (statistics.median(r[i] for r in nep_runs) for i in range(3))
        noop_s, noop_cpu = (statistics.median(r[i] for r in noop_runs) for i in range(2))
        paper_s = paper_cpu = paper_mib = float("nan")
        if paper_runs:
            paper_s, paper_cpu, paper_mib = (statistics.median(r[i] for r in paper_runs) for i in range(3))
        print(f"{size:>4}x{records:>9}{source.stat().st_size / 1e6:>7.0f}{survivors:>10}"
              f"{nep_s:>7.1f}/{nep_cpu:<5.1f}{nep_mib:>9.0f}{noop_s:>6.1f}/{noop_cpu:<5.1f}"
              f"{paper_s:>7.1f}/{paper_cpu:<5.1f}{paper_mib:>10.0f}{paper_s / nep_s:>8.1f}x", flush=True)
        if args.repeat > 1:
            each = ", ".join(f"{p[0] / n[0]:.1f}x" for n, p in zip(nep_runs, paper_runs))
            print(f"      each run's speed-up: {each}", flush=True)

if __name__ == "__main__":
    main()
