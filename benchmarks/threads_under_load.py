"""The offline default's torch stages, idle and under a synthetic CPU load, with torch's default
threads versus nep's thread policy (nep.device.configure_threads).

Run: `python -m benchmarks.threads_under_load [--load 2] [--limit 300] [--whole]`.

A copy of the project (in a temp dir, mining this repository's history read-only) runs
`dvc repro split` once; then, for each policy and each load, `dvc repro -f -s finetune` and
`dvc repro -f -s generate@finetuned` (with `--whole`: the whole `dvc repro -f` instead) are timed.
The load is `--load` processes spinning on the CPU for the whole run. Policies:

- torch:  `finetune.threads` / `generate.threads` = all usable cores (torch's own default count),
          OMP_WAIT_POLICY="" (an invalid value: libgomp warns and keeps its default spin-then-sleep);
- nep:    threads 0 (auto: half the cores, at least 1) and OMP_WAIT_POLICY=PASSIVE.

Each command is bounded by `--limit` seconds (reported as ">LIMIT"). Prints one row per policy:
seconds idle, seconds loaded, and loaded / idle.
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

from nep.device import usable_cores

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
    parser.add_argument("--load", type=int, default=2, help="busy processes while loaded")
    parser.add_argument("--limit", type=float, default=300, help="seconds allowed per command")
    parser.add_argument("--whole", action="store_true", help="time the whole `dvc repro -f`")
    parser.add_argument("--policies", nargs="+", default=["torch", "nep"], choices=["torch", "nep"])
    args = parser.parse_args()
    commands = [["repro", "-f"]] if args.whole else [["repro", "-f", "-s", "finetune"],
                                                     ["repro", "-f", "-s", "generate@finetuned"]]
    with tempfile.TemporaryDirectory(prefix="nep-threads-") as tmp:
        project = copy_project(Path(tmp) / "project")
        print(f"{usable_cores()} usable cores; preparing (dvc repro split)...", flush=True)
        if timed(project, ["repro", "split"], dict(os.environ), args.limit * 4) is None:
            raise SystemExit("preparing the data took too long")
        rows = []
        for policy in args.policies:
            idle = run_policy(project, policy, commands, args.limit)
            workers = [mp.Process(target=spin, daemon=True) for _ in range(args.load)]
            for w in workers:
                w.start()
            try:
                loaded = run_policy(project, policy, commands, args.limit)
            finally:
                for w in workers:
                    w.terminate()
                    w.join()
            rows.append((policy, idle, loaded))
            print(f"  {policy}: idle {fmt(idle, args.limit)}, loaded {fmt(loaded, args.limit)}", flush=True)
    what = "dvc repro -f" if args.whole else "finetune + generate@finetuned"
    print(f"\n{what}, {args.load} busy processes while loaded\n")
    print(f"{'policy':<8} {'idle s':>8} {'loaded s':>9} {'loaded/idle':>12}")
    for policy, idle, loaded in rows:
        ratio = f"{loaded / idle:.2f}" if idle and loaded else "-"
        print(f"{policy:<8} {fmt(idle, args.limit):>8} {fmt(loaded, args.limit):>9} {ratio:>12}")


def fmt(seconds: float | None, limit: float) -> str:
    return f">{limit:.0f}" if seconds is None else f"{seconds:.1f}"


if __name__ == "__main__":
    main()
