"""The offline default's torch stages, idle and under a synthetic CPU load, with torch's default
threads versus nep's thread policy (nep.util.device.configure_threads).

Run: `python -m benchmarks.threads_under_load [--loads 0,1,2] [--repeat 1] [--limit 300] [--whole]`.

A copy of the project (in a temp dir, mining this repository's history read-only) runs
`dvc repro split` once; then, for each policy and each load, `dvc repro -f -s finetune` and
`dvc repro -f -s generate@finetuned` (with `--whole`: the whole `dvc repro -f` instead) are timed.
Each load of `--loads` is that many processes spinning on the CPU for the whole run. Policies:

- torch:  `finetune.threads` / `generate.threads` = all usable cores (torch's own default count),
          OMP_WAIT_POLICY="" (an invalid value: libgomp warns and keeps its default spin-then-sleep);
- one:    one thread, passive waiting (nep's earlier policy);
- nep:    threads 0 (auto: torch's count within the usable cores), OMP_WAIT_POLICY=PASSIVE as
          nep.util.device sets it when nep is imported.

Each command is bounded by `--limit` seconds (reported as ">LIMIT"). Prints one row per policy:
seconds under each load, and each loaded time over the idle one.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import yaml

from nep.util.device import usable_cores

REPO_ROOT = Path(__file__).resolve().parents[1]
SKIP = {"data", "models", "metrics", "dvc.lock", "__pycache__", ".git", ".pytest_cache", ".ruff_cache", "results"}


def spin() -> None:
    while True:
        pass


def copy_project(dest: Path) -> Path:
    """The project's files (no outputs) in `dest`, with ingest mining this repository read-only."""
    def ignore(folder: str, names: list[str]) -> set[str]:
        skip = SKIP | ({"cache", "tmp"} if Path(folder).name == ".dvc" else set())
        return {n for n in names if n in skip}

    shutil.copytree(REPO_ROOT, dest, ignore=ignore)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["ingest"]["git"]["repos"] = [str(REPO_ROOT)]
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    env = {**os.environ, "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@localhost",
           "GIT_COMMITTER_NAME": "bench", "GIT_COMMITTER_EMAIL": "bench@localhost"}
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-q", "-m", "benchmark copy"]):
        subprocess.run(["git", *args], cwd=dest, env=env, check=True)
    return dest


def set_threads(project: Path, threads: int) -> None:
    path = project / "params.yaml"
    params = yaml.safe_load(path.read_text())
    params["finetune"]["threads"] = threads
    params["generate"]["threads"] = threads
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def timed(project: Path, args: list[str], env: dict[str, str], limit: float) -> float | None:
    start = time.perf_counter()
    try:
        done = subprocess.run(["dvc", *args], cwd=project, env=env, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return None
    if done.returncode != 0:
        raise SystemExit(f"dvc {' '.join(args)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    return time.perf_counter() - start


def run_policy(project: Path, policy: str, commands: list[list[str]], limit: float) -> float | None:
    cores = usable_cores()
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_NUM_THREADS", "MKL_NUM_THREADS")}
    if policy == "torch":
        set_threads(project, cores)
        env["OMP_WAIT_POLICY"] = ""
    elif policy == "one":
        set_threads(project, 1)
        env.pop("OMP_WAIT_POLICY", None)
    else:
        set_threads(project, 0)
        env.pop("OMP_WAIT_POLICY", None)
    total = 0.0
    for args in commands:
        seconds = timed(project, args, env, limit)
        if seconds is None:
            return None
        total += seconds
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--loads", default="0,1,2", help="busy processes per run, comma-separated (0 = idle)")
    parser.add_argument("--limit", type=float, default=300, help="seconds allowed per command")
    parser.add_argument("--repeat", type=int, default=1, help="runs per policy and load (median reported)")
    parser.add_argument("--whole", action="store_true", help="time the whole `dvc repro -f`")
    parser.add_argument("--policies", nargs="+", default=["torch", "one", "nep"], choices=["torch", "one", "nep"])
    args = parser.parse_args()
    loads = [int(x) for x in args.loads.split(",")]
    commands = [["repro", "-f"]] if args.whole else [["repro", "-f", "-s", "finetune"],
                                                     ["repro", "-f", "-s", "generate@finetuned"]]
    with tempfile.TemporaryDirectory(prefix="nep-threads-") as tmp:
        project = copy_project(Path(tmp) / "project")
        print(f"{usable_cores()} usable cores, load average {os.getloadavg()[0]:.1f}; preparing (dvc repro split)...",
              flush=True)
        if timed(project, ["repro", "split"], dict(os.environ), args.limit * 4) is None:
            raise SystemExit("preparing the data took too long")
        # policies interleaved within each load, repeated: drift of a shared machine hits all alike
        runs: dict[tuple[str, int], list[float | None]] = {}
        for load in loads:
            for _ in range(args.repeat):
                for policy in args.policies:
                    workers = [mp.Process(target=spin, daemon=True) for _ in range(load)]
                    for w in workers:
                        w.start()
                    try:
                        seconds = run_policy(project, policy, commands, args.limit)
                    finally:
                        for w in workers:
                            w.terminate()
                            w.join()
                    runs.setdefault((policy, load), []).append(seconds)
                    print(f"  {policy}, {load} busy: {fmt(seconds, args.limit)} s", flush=True)
        rows = [(policy, [median(runs[policy, load]) for load in loads]) for policy in args.policies]
    what = "dvc repro -f" if args.whole else "finetune + generate@finetuned"
    print(f"\n{what}: seconds with N busy processes (and / the first column)\n")
    print(f"{'policy':<8}" + "".join(f"{f'{n} busy':>16}" for n in loads))
    for policy, seconds in rows:
        cells = []
        for s_ in seconds:
            ratio = f" ({s_ / seconds[0]:.2f}x)" if s_ and seconds[0] else ""
            cells.append(f"{fmt(s_, args.limit) + ratio:>16}")
        print(f"{policy:<8}" + "".join(cells))


def median(values: list[float | None]) -> float | None:
    """The median, None (over the limit) counting as the largest value."""
    ordered = sorted(values, key=lambda v: float("inf") if v is None else v)
    return ordered[len(ordered) // 2] if len(ordered) % 2 else _mean(ordered[len(ordered) // 2 - 1:len(ordered) // 2 + 1])


def _mean(pair: list[float | None]) -> float | None:
    return None if None in pair else (pair[0] + pair[1]) / 2


def fmt(seconds: float | None, limit: float) -> str:
    return f">{limit:.0f}" if seconds is None else f"{seconds:.1f}"


if __name__ == "__main__":
    main()
