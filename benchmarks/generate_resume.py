"""Resumable generation: `kill -9` a generate stage mid-run, rerun it, count what was lost.

    python -m benchmarks.generate_resume [--predictor hf|openai] [--examples 48] [--kill-at 0.5]

In a scratch project (this repository's params.yaml, a synthetic test set), runs
`python -m stages.generate` once uninterrupted (the reference), then again, killing it with SIGKILL
once `--kill-at` of the examples are saved in its checkpoint, then reruns it. Reports how many
answers the killed run had saved, how many the rerun resumed and redid, the work lost (answers in
flight at the kill), and whether the final records are byte-identical to the reference.

- `hf`: the tiny smoke model on the CPU, `generate.batch_size` examples per model call; the
  batch in flight at the kill is lost (at most `--batch-size`).
- `openai`: a local OpenAI-compatible server (tests/fake_openai.py) answering each request after
  `--delay` s, `--concurrency` in flight; lost = requests sent again by the rerun.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from benchmarks.generate_throughput import synthetic_examples
from nep.util.jsonl import write_jsonl

ROOT = Path(__file__).resolve().parents[1]


def stage(project: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "stages.generate", "--predictor", "bench"], cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def saved(cache: Path) -> int:
    """Answers in the checkpoint (lines after the header; a torn last line is not counted)."""
    files = list((cache / "generate").glob("bench.*.jsonl"))
    if not files:
        return 0
    text = files[0].read_text()
    return max(0, text.count("\n") - 1)


def setup(project: Path, args, entry: dict) -> None:
    (project / "data" / "split").mkdir(parents=True)
    write_jsonl(project / "data" / "split" / "test.jsonl", synthetic_examples(args.examples))
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["generate"].update(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, threads=1,
                              predictors={"bench": {**entry, "needs": "data/split/test.jsonl"}})
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def run_once(project: Path, env: dict[str, str], name: str) -> float:
    start = time.perf_counter()
    done = stage(project, env)
    _, err = done.communicate()
    if done.returncode != 0:
        raise SystemExit(f"{name} run failed:\n{err}")
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictor", choices=["hf", "openai"], default="hf")
    parser.add_argument("--examples", type=int, default=48)
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--kill-at", type=float, default=0.5, help="share of examples saved before the kill")
    parser.add_argument("--delay", type=float, default=0.3, help="openai: seconds per answer")
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="nep-resume-") as tmp:
        tmp = Path(tmp)
        server = None
        if args.predictor == "hf":
            from nep.train.tiny import build_tiny_model

            model = build_tiny_model([e["text"] for e in synthetic_examples(args.examples)], tmp / "tiny", vocab_size=2048)
            entry = {"kind": "hf", "model": str(model), "device": "cpu"}
        else:
            from tests.fake_openai import FakeOpenAI  # the fake server lives with the tests

            server = FakeOpenAI(default_answer="<next_version>\nx = 1\n</next_version>",
                                latency=lambda key: args.delay).__enter__()
            entry = {"kind": "openai", "model": "bench", "base_url": server.url, "api_key_env": "",
                     "concurrency": args.concurrency}
        base_env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1"}
        results: dict[str, Path] = {}
        walls: dict[str, float] = {}
        for name in ("reference", "resumed"):
            project = tmp / name
            setup(project, args, entry)
            env = {**base_env, "NEP_CACHE_DIR": str(tmp / f"cache-{name}")}
            results[name] = project / "data" / "generate" / "bench.jsonl"
            sent_before = server.requests if server else 0
            if name == "reference":
                walls[name] = run_once(project, env, name)
                reference_requests = server.requests - sent_before if server else 0
                continue
            cache = tmp / f"cache-{name}"
            start = time.perf_counter()
            proc = stage(project, env)
            target = max(1, int(args.examples * args.kill_at))
            while saved(cache) < target and proc.poll() is None:
                time.sleep(0.01)
            if proc.poll() is not None:
                raise SystemExit(f"the run ended before {target} answers were saved: {proc.stderr.read()}")
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            killed_wall = time.perf_counter() - start
            at_kill = saved(cache)
            sent_by_killed = server.requests - sent_before if server else 0
            walls[name] = killed_wall + run_once(project, env, "rerun")
            timing = json.loads((project / "metrics" / "timing" / "generate" / "bench.json").read_text())
            sent_by_rerun = server.requests - sent_before - sent_by_killed if server else 0
        if server:
            server.__exit__(None, None, None)
        identical = results["reference"].read_bytes() == results["resumed"].read_bytes()

    n = args.examples
    print(f"predictor {args.predictor}, {n} examples, batch_size {args.batch_size}, max_new_tokens "
          f"{args.max_new_tokens}" + (f", concurrency {args.concurrency}, {args.delay}s/answer" if server else ""))
    print(f"killed (SIGKILL) with {at_kill} of {n} answers saved, after {killed_wall:.1f}s")
    print(f"rerun: resumed {timing['examples_resumed']}, generated {timing['examples_generated']}")
    if server:
        lost = sent_by_killed + sent_by_rerun - reference_requests
        print(f"requests: reference {reference_requests}; killed run {sent_by_killed} + rerun {sent_by_rerun}: "
              f"{lost} answers lost and asked again (≤ concurrency {args.concurrency})")
    else:
        lost = min(args.batch_size, n - at_kill)
        print(f"lost: the batch in flight at the kill, {lost} examples (≤ batch_size {args.batch_size})")
    print(f"wall: reference {walls['reference']:.1f}s, killed + rerun {walls['resumed']:.1f}s "
          f"(start-up and model loading paid twice)")
    print(f"final records byte-identical to the uninterrupted run: {identical}")


if __name__ == "__main__":
    main()
