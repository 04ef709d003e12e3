"""Export a pipeline run's per-example answers and scores, so every count in the docs can be
recomputed from files: the test set and each predictor's generation records, scored the way
benchmarks.answer_formats scores them (nep.evaluate.metrics.score_example: delta chrF, exact match),
with `copy` (the next version is the current version, final newlines aside) and `ended` (the model
stopped the answer itself).

    python -m benchmarks.run_examples --test data/split/test.jsonl --generate data/generate \
        --out docs/real-model/<run>

Writes `<out>/<predictor>.jsonl` (id, path, the raw answer, the next version read from it or why
not, the scores) and `<out>/summary.json` (one row per predictor: n, mean delta chrF, exact
matches, copies, answers that ended, next versions, why answers did not apply, output tokens).

    python -m benchmarks.run_examples --paired A/finetuned.jsonl B/finetuned.jsonl ...

compares such exported files on the same test examples: each one's mean delta chrF and the paired
permutation p-value (evaluate's test, 10,000 rounds, seed 0) against the first.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

KEPT = ("id", "path", "raw_output", "output", "extracted", "extraction", "stop", "output_tokens", "logprob")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--test", default="data/split/test.jsonl")
    parser.add_argument("--generate", default="data/generate")
    parser.add_argument("--out")
    parser.add_argument("--paired", nargs="+", help="exported <predictor>.jsonl files to compare (the first is the reference)")
    parser.add_argument("--predictors", nargs="*", help="default: every data/generate/*.jsonl")
    args = parser.parse_args()

    from benchmarks.answer_formats import score
    from nep.util.jsonl import read_jsonl, write_jsonl

    if args.paired:
        return paired(args.paired)
    if not args.out:
        parser.error("--out is required (or --paired)")

    tests = list(read_jsonl(args.test))
    by_id = {t["id"]: t for t in tests}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    names = args.predictors or sorted(p.stem for p in Path(args.generate).glob("*.jsonl"))
    summary = {}
    for name in names:
        records = list(read_jsonl(Path(args.generate) / f"{name}.jsonl"))
        rows, summary[name] = score(records, [by_id[r["id"]] for r in records])
        write_jsonl(out / f"{name}.jsonl", [{k: r[k] for k in (*KEPT, "delta_chrf", "exact_match", "copy", "ended")
                                             if k in r} for r in rows])
    (out / "summary.json").write_text(json.dumps(summary, indent=1) + "\n")
    for name, row in summary.items():
        print(f"{name:12} n {row['n']:4}  delta chrF {row['delta_chrf']:.4f}  exact {row['exact_match']:3}  "
              f"copies {row['copies']:3}  ended {row['ended']:3}  next versions {row['extracted']:3}  {row['not_applied']}")


def paired(files: list[str]) -> None:
    import numpy as np

    from nep.evaluate.stats import paired_permutation_p
    from nep.util.jsonl import read_jsonl

    runs = [{r["id"]: r["delta_chrf"] for r in read_jsonl(f)} for f in files]
    ids = sorted(runs[0])
    if any(sorted(run) != ids for run in runs):
        raise SystemExit("run_examples --paired: the files do not hold the same test examples")
    ref = np.array([runs[0][i] for i in ids])
    for f, run in zip(files, runs, strict=True):
        values = np.array([run[i] for i in ids])
        p = "reference" if run is runs[0] else f"p = {paired_permutation_p(ref, values, 10_000, 0):.4f}"
        print(f"{f}: n {len(ids)}  delta chrF {values.mean():.4f}  {p}")


if __name__ == "__main__":
    main()
