"""Speculative copying (`generate.prompt_lookup_tokens`) against plain greedy decoding, on one model
and one fixed set of test examples: wall time, tokens/s, and whether every answer is the same text.

    python -m benchmarks.speculative_decoding models/finetune data/split/test.jsonl --n 16 \
        [--batch-size 8] [--lookup 10] [--max-new-tokens 320] [--growth 96] [--threads 0]

`--n` examples are a seeded sample (seed 0) of the file, kept in file order: the same examples for
every variant. Variants, in this order on one loaded model (loading is not timed):

- `batch<B>`: nep's predictor as the generate stage runs it (`--batch-size` prompts per call, by
  prompt length, left padding) without drafting;
- `batch1`: one prompt per call, without drafting (what prompt lookup has to beat per row);
- `lookup<K>`: one prompt per call, drafting `K` tokens from the prompt (transformers' prompt lookup,
  which supports batch size 1 only), for each `--lookup` value.

The model is a `finetuned` output directory (its adapter, merged as generate loads it) or, with
`--hf`, any model an `hf` predictor takes (training prompt). Prints one JSON object: per variant the
seconds, answer tokens, tokens/s, the speed-up over `batch<B>` and over `batch1`, and how many
answers differ from `batch<B>`'s (text, token count or stop reason).
"""

from __future__ import annotations

import argparse
import json
import random
import time
from pathlib import Path


def load_examples(path: Path, n: int) -> list[dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    keep = sorted(random.Random(0).sample(range(len(rows)), min(n, len(rows))))
    return [rows[i] for i in keep]


def run(predictor, examples: list[dict], settings) -> tuple[float, list]:
    out: dict[int, object] = {}
    start = time.perf_counter()
    for group in predictor.predict(examples, list(range(len(examples))), settings):
        for i, prediction in group:
            out[i] = prediction
    return time.perf_counter() - start, [out[i] for i in range(len(examples))]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.speculative_decoding",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("model", help="a finetune output directory (or, with --hf, an hf predictor's model)")
    parser.add_argument("examples", type=Path, help="a split's JSONL (data/split/test.jsonl)")
    parser.add_argument("--hf", action="store_true", help="the model is a base model for an hf predictor")
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--lookup", type=int, nargs="+", default=[10])
    parser.add_argument("--max-new-tokens", type=int, default=320)
    parser.add_argument("--growth", type=int, default=96, help="generate.max_growth_tokens")
    parser.add_argument("--threads", type=int, default=0)
    args = parser.parse_args(argv)

    from nep.predictors.base import Settings
    from nep.predictors.kinds import build_predictor

    examples = load_examples(args.examples, args.n)
    entry = {"kind": "hf", "model": args.model, "chat": False} if args.hf else {"kind": "finetuned", "model": args.model}
    predictor = build_predictor("bench", entry)
    _ = predictor.generator  # load before timing

    def settings(batch: int, lookup: int):
        return Settings.of(None, None, max_new_tokens=args.max_new_tokens, batch_size=batch, threads=args.threads,
                           max_growth_tokens=args.growth, prompt_lookup_tokens=lookup)

    variants = [(f"batch{args.batch_size}", args.batch_size, 0), ("batch1", 1, 0)]
    variants += [(f"lookup{k}", 1, k) for k in args.lookup]
    report: dict = {"model": args.model, "examples": len(examples), "max_new_tokens": args.max_new_tokens,
                    "max_growth_tokens": args.growth, "variants": {}}
    reference = None
    times = {}
    for name, batch, lookup in variants:
        seconds, predictions = run(predictor, examples, settings(batch, lookup))
        answers = [(p.raw_output, p.output_tokens, p.tags.get("stop")) for p in predictions]
        reference = reference or answers
        tokens = sum(p.output_tokens for p in predictions)
        times[name] = seconds
        report["variants"][name] = {
            "seconds": round(seconds, 1), "tokens": tokens, "tokens_per_s": round(tokens / seconds, 1),
            "differ_from_batched": sum(a != b for a, b in zip(answers, reference, strict=True)),
        }
        print(name, report["variants"][name], flush=True)
    first = f"batch{args.batch_size}"
    for name, values in report["variants"].items():
        values["speedup_vs_batched"] = round(times[first] / times[name], 2)
        values["speedup_vs_batch1"] = round(times["batch1"] / times[name], 2)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
