"""Evaluation speed: scoring every example, then the bootstrap intervals and paired tests.

Run: `python -m benchmarks.evaluate_speed [--examples 210] [--predictors 3] [--samples 10000]`.

Builds synthetic whole-file examples (50 to 600 lines; the ground truth adds one line, each
predictor gets half of them right) in a temporary directory and times nep.evaluate.evaluation's two parts:
`score_predictor` (the diffs, hunks, chunks, chrF and Levenshtein of every example) and the
statistics (intervals per predictor and per language, paired tests against the first predictor).
"""

from __future__ import annotations

import argparse
import os
import random
import tempfile
import time

from nep.core.prompts import build_prompt
from nep.evaluate import evaluation
from nep.util import paths
from nep.util.jsonl import write_jsonl

LANGUAGES = ("Python", "Java", "Go", "C", "C++", "JavaScript", "TypeScript")


def write_inputs(examples: int, predictors: list[str]) -> None:
    for k, name in enumerate(predictors):
        rng = random.Random(0)
        generations, judgments = [], []
        for i in range(examples):
            lines = [f"    value_{rng.randint(0, 999)} = compute({j})\n" for j in range(rng.randint(50, 600))]
            at = rng.randrange(len(lines))
            truth = lines[:at] + ["    the_next_edit()\n"] + lines[at:]
            right = (i + k) % 2 == 0
            output = truth if right else lines[:at] + ["    something_else()\n"] + lines[at:]
            generations.append({
                "id": str(i), "prompt": build_prompt("".join(lines[1:]), "".join(lines)),
                "output": "".join(output), "ground_truth": "".join(truth),
                "language": LANGUAGES[i % len(LANGUAGES)], "extracted": True, "output_tokens": 100,
            })
            judgments.append({"id": str(i), "judgment": int(right), "reason": ""})
        write_jsonl(f"data/generate/{name}.jsonl", generations)
        write_jsonl(f"data/judge/{name}.jsonl", judgments)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=210)
    parser.add_argument("--predictors", type=int, default=3)
    parser.add_argument("--samples", type=int, default=10000)
    args = parser.parse_args()
    predictors = [f"p{i}" for i in range(args.predictors)]
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        os.chdir(tmp)
        try:
            write_inputs(args.examples, predictors)
            t0 = time.perf_counter()
            scored = [evaluation.score_predictor(name, paths.generations(name), paths.judgments(name), context_lines=3)[0] for name in predictors]
            t1 = time.perf_counter()
            for scores in scored:  # what evaluate() computes on top of the scores
                evaluation.intervals(scores, samples=args.samples, seed=0)
                for language in LANGUAGES:
                    group = [s for s in scores if s.language == language]
                    evaluation.intervals(group, samples=args.samples, seed=0)
                evaluation.paired_tests(scores, scored[0], samples=args.samples, seed=0)
            t2 = time.perf_counter()
            evaluation.evaluate({n: (paths.generations(n), paths.judgments(n)) for n in predictors}, reference="", context_lines=3, bootstrap_samples=args.samples, seed=0)
            t3 = time.perf_counter()
        finally:
            os.chdir(cwd)
    scoring = t1 - t0
    print(f"{args.predictors} predictors × {args.examples} examples, {args.samples} resamples")
    print(f"scoring: {scoring:.2f} s ({scoring / (args.predictors * args.examples) * 1000:.1f} ms/example)")
    print(f"statistics (intervals per predictor and language, paired tests): {t2 - t1:.2f} s")
    print(f"evaluate in all: {t3 - t2:.2f} s")


if __name__ == "__main__":
    main()
