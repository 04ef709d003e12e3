"""Which answer format learns edits: fine-tune the same base model on the same training examples in
each format (nep.core.formats), generate on the same test examples, and score the full next versions.

    nice python -m benchmarks.answer_formats --train data/split/train.jsonl --test data/split/test.jsonl \
        --preset presets/smollm2.yaml --formats whole region blocks --train-examples 64 --test-examples 40 \
        --epochs 1 --out docs/real-model/formats

For each format: `run_finetune` on a seeded sample of `--train-examples` training examples (the
preset's finetune params, `--epochs`), then the `finetuned` predictor through nep's runner on a
seeded sample of `--test-examples` test examples (the preset's generate params), each answer turned
into the full next version by the format. Writes, per format, the generation records with each
example's scores (`<out>/<name>.jsonl`) and one summary row (`<out>/summary.json`): delta chrF,
exact match, copies of the current version, answers that ended, why answers did not apply, training
tokens and minutes. `--baselines` adds identity and propagate on the same test sample;
`--base-chat` the untrained model given nep's chat prompt (the fair base model).
"""

from __future__ import annotations

import argparse
import json
import random
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml


def sample(rows: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """`n` rows chosen with `seed`, in file order (all when n ≥ len)."""
    if n >= len(rows):
        return rows
    keep = set(random.Random(seed).sample(range(len(rows)), n))
    return [r for i, r in enumerate(rows) if i in keep]


def score(records: list[dict[str, Any]], tests: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Per-example scores (added to each record) and the summary of one predictor."""
    from collections import Counter

    from nep.evaluate.metrics import score_example
    from nep.predictors.runner import is_copy
    from nep.predictors.stop import INCOMPLETE

    rows, reasons = [], Counter()
    for rec, ex in zip(records, tests, strict=True):
        s = score_example(original=ex["original"], current=ex["current"], ground_truth=ex["next"],
                          prediction=rec["output"], extracted=rec["extracted"], id=ex["id"])
        copy = rec["extracted"] and is_copy(rec)
        ended = rec.get("stop") not in INCOMPLETE  # the model ended it (baselines: always)
        rows.append({**rec, "delta_chrf": s.delta_chrf, "exact_match": s.exact_match, "copy": copy, "ended": ended})
        if not rec["extracted"]:
            reasons[rec["extraction"]] += 1
    n = len(rows)
    return rows, {
        "n": n,
        "delta_chrf": round(sum(r["delta_chrf"] for r in rows) / n, 4),
        "exact_match": sum(r["exact_match"] for r in rows),
        "copies": sum(r["copy"] for r in rows),
        "ended": sum(r["ended"] for r in rows),
        "extracted": sum(r["extracted"] for r in rows),
        "not_applied": dict(sorted(reasons.items())),
        "output_tokens": sum(r["output_tokens"] for r in rows),
    }


def run_predictor(name: str, entry: dict[str, Any], settings, test_path: Path, scratch: Path) -> tuple[list, float]:
    from nep.predictors.runner import generate
    from nep.util.jsonl import read_jsonl

    out = scratch / f"{name}.jsonl"
    start = time.perf_counter()
    generate(name, entry, settings, test_path=test_path, out_path=out, metrics_path=scratch / f"{name}.m.json",
             timing_path=scratch / f"{name}.t.json", progress=False)
    return list(read_jsonl(out)), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train", required=True)
    parser.add_argument("--test", required=True)
    parser.add_argument("--preset", default="presets/smollm2.yaml")
    parser.add_argument("--formats", nargs="*", default=["whole", "region", "blocks"])
    parser.add_argument("--region-lines", type=int, default=8)
    parser.add_argument("--omit-original", action="store_true")
    parser.add_argument("--train-examples", type=int, default=64)
    parser.add_argument("--test-examples", type=int, default=40)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--baselines", action="store_true")
    parser.add_argument("--base-chat", action="store_true")
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--out", required=True)
    args = parser.parse_args()

    from nep.config.schema import Format, section
    from nep.core.formats import answer_format
    from nep.predictors.base import Settings
    from nep.train.sft import run_finetune
    from nep.util.jsonl import read_jsonl, write_jsonl

    preset = yaml.safe_load(Path(args.preset).read_text())
    finetune = section("finetune", {**preset["finetune"], "epochs": args.epochs, "threads": args.threads})
    generate = section("generate", {k: v for k, v in preset["generate"].items() if k != "predictors"})
    train = sample(list(read_jsonl(args.train)), args.train_examples, args.seed)
    tests = sample(list(read_jsonl(args.test)), args.test_examples, args.seed)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    summary_path = out / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    with tempfile.TemporaryDirectory(prefix="nep-formats-") as tmp:
        scratch = Path(tmp)
        test_path = scratch / "test.jsonl"
        write_jsonl(test_path, tests)
        runs: list[tuple[str, dict[str, Any], Any]] = []
        if args.baselines:
            runs += [("identity", {"kind": "identity"}, None), ("propagate", {"kind": "propagate"}, None)]
        if args.base_chat:
            runs.append(("base_chat", {"kind": "hf", "model": preset["finetune"]["base_model"], "chat": True}, None))
        for name in args.formats:
            runs.append((name, {}, Format(answer=name, region_lines=args.region_lines, omit_original=args.omit_original)))
        for name, entry, options in runs:
            row: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}
            fmt = Format() if options is None else options
            if options is not None:  # fine-tune in the format first
                model = scratch / f"model-{name}"
                start = time.perf_counter()
                result = run_finetune(train, model, finetune, progress=False, fmt=answer_format(options))
                row.update(train_minutes=round((time.perf_counter() - start) / 60, 1),
                           train_examples=result.metrics["examples_used"],
                           train_dropped={k: v for k, v in result.metrics.items() if k.startswith("dropped.")},
                           train_tokens=result.metrics["train_tokens"],
                           train_completion_tokens=result.metrics["train_completion_tokens"],
                           mean_loss=round(result.metrics["mean_loss"], 4), format=options.model_dump())
                entry = {"kind": "finetuned", "model": str(model), "needs": str(model)}
            settings = Settings.of(generate, fmt)
            records, wall = run_predictor(name, {"needs": str(test_path), **entry}, settings, test_path, scratch)
            rows, scores = score(records, tests)
            row.update(scores, generate_minutes=round(wall / 60, 1))
            key = name if not args.omit_original or options is None else f"{name}-omit_original"
            write_jsonl(out / f"{key}.jsonl", rows)
            summary[key] = row
            summary_path.write_text(json.dumps(summary, indent=2) + "\n")
            print(key, json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
