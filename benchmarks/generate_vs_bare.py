"""nep's transformers generation against a bare `model.generate`, on a real model and real prompts.

    python -m benchmarks.generate_vs_bare --model /work/models/smollm2-135m-instruct \
        [--examples data/process/examples.jsonl] [--n 8] [--batch-size 8] [--max-new-tokens 64] \
        [--threads 0] [--repeats 2] [--adapter models/finetune]

The same `--n` training prompts (nep's processed examples), in nep's batches (by prompt length,
`--batch-size`), greedy, the model's EOS, `--max-new-tokens`, on the CPU. Variants, each in its own
process (so peak memory is its own; loading is not timed):

- `bare`: the tokenizer (left padding) and `model.generate` of the base model, nothing else;
- `hf`: nep's `hf` predictor on the same model (training prompt, loop guard on);
- `finetuned`: nep's `finetuned` predictor on an adapter of that model (`--adapter`, a finetune
  output; default an untrained LoRA adapter with trained-embedding copies, the default recipe's
  shape, whose cost is a trained one's), as nep loads it for generation (merged);
- `finetuned_unmerged`: the same with `merge_adapter: false` (nep before issue 22);
- `bare_adapter`: `model.generate` on the same adapter as peft loads it (unmerged).

Prints generated tokens (up to EOS), generation wall time (fastest of `--repeats`, interleaved),
tokens/s, how many times slower than `bare` (its tokens/s over the variant's), and peak RSS. Goal (issue 22): nep within 2× of bare.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

VARIANTS = ("bare", "hf", "finetuned", "finetuned_unmerged", "bare_adapter")


def load_prompts(path: str, n: int) -> list[dict]:
    records = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    records.sort(key=lambda r: (len(r["prompt"]), r["id"]))
    step = max(1, len(records) // n)  # spread over the lengths
    return [{"id": r["id"], "prompt": r["prompt"], "next": r.get("next", "")} for r in records[::step][:n]]


def make_adapter(model_dir: str, out: Path) -> Path:
    from nep.config.schema import section
    from nep.train.model import prepare_hf, save_finetuned

    cfg = section("finetune", {"base_model": model_dir})
    model, tokenizer = prepare_hf(model_dir, cfg)
    save_finetuned(model, tokenizer, out, {"base_model": model_dir, "backend": "hf", "params": cfg.to_dict()})
    return out


def bare_generate(model, tokenizer, batches: list[list[str]], max_new_tokens: int, eos: list[int]) -> int:
    import torch

    tokens = 0
    tokenizer.padding_side = "left"
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    for prompts in batches:
        batch = tokenizer(prompts, return_tensors="pt", padding=True)
        with torch.inference_mode():
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False, num_beams=1,
                                 eos_token_id=eos, pad_token_id=tokenizer.pad_token_id)
        for row in out[:, batch["input_ids"].shape[1]:].tolist():
            tokens += next((i for i, t in enumerate(row) if t in eos), len(row))
    return tokens


def run_variant(args) -> dict:
    """One variant, in this process: {tokens, wall_s, peak_rss_mb, prompt_tokens}."""
    import torch

    from nep.predictors.base import Settings, by_length
    from nep.predictors.hf import FinetunedPredictor, HFPredictor
    from nep.util.device import configure_threads

    threads = configure_threads(args.threads)
    examples = load_prompts(args.examples, args.n)
    todo = list(range(len(examples)))
    batches = [[examples[i]["prompt"] for i in idx] for idx in by_length(examples, todo, args.batch_size)]
    settings = Settings.of(max_new_tokens=args.max_new_tokens, batch_size=args.batch_size, threads=args.threads)
    if args.variant in ("bare", "bare_adapter"):
        from nep.train.model import load_base_hf, load_finetuned

        if args.variant == "bare":
            model, tokenizer = load_base_hf(args.model, device="cpu")
        else:
            model, tokenizer = load_finetuned(args.adapter, device="cpu")
        model.eval()
        eos = sorted({tokenizer.eos_token_id})
        start = time.perf_counter()
        tokens = bare_generate(model, tokenizer, batches, args.max_new_tokens, eos)
    else:
        if args.variant == "hf":
            predictor = HFPredictor(model=args.model, device="cpu", chat=False)
        else:
            predictor = FinetunedPredictor(model=args.adapter, device="cpu", merge_adapter=args.variant == "finetuned")
        _ = predictor.generator  # load
        tokenizer = predictor.generator.tokenizer
        start = time.perf_counter()
        answers = [p for group in predictor.predict(examples, todo, settings) for _, p in group]
        tokens = sum(p.output_tokens for p in answers)
    wall = time.perf_counter() - start
    lengths = [len(tokenizer(e["prompt"])["input_ids"]) for e in examples]
    return {"variant": args.variant, "tokens": tokens, "wall_s": round(wall, 2), "threads": threads,
            "prompt_tokens": [min(lengths), max(lengths)], "torch": torch.__version__,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=os.environ.get("NEP_SMOLLM2_DIR", "/work/models/smollm2-135m-instruct"))
    parser.add_argument("--examples", default="data/process/examples.jsonl")
    parser.add_argument("--n", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: nep.util.device's auto)")
    parser.add_argument("--repeats", type=int, default=2, help="runs per variant, interleaved; the fastest counts")
    parser.add_argument("--adapter", default="", help="a finetune output on --model (default: an untrained adapter)")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--variant", choices=VARIANTS, help=argparse.SUPPRESS)  # one run, in a child process
    args = parser.parse_args()
    if args.variant:
        print(json.dumps(run_variant(args)))
        return
    with tempfile.TemporaryDirectory(prefix="nep-bench-") as tmp:
        if not args.adapter and set(args.variants) - {"bare", "hf"}:
            args.adapter = str(make_adapter(args.model, Path(tmp) / "adapter"))
        best: dict[str, dict] = {}
        for _ in range(args.repeats):
            for variant in args.variants:
                cmd = [sys.executable, "-m", "benchmarks.generate_vs_bare", "--variant", variant, "--model", args.model,
                       "--examples", args.examples, "--n", str(args.n), "--batch-size", str(args.batch_size),
                       "--max-new-tokens", str(args.max_new_tokens), "--threads", str(args.threads),
                       "--adapter", args.adapter]
                out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
                result = json.loads(out.strip().splitlines()[-1])
                if variant not in best or result["wall_s"] < best[variant]["wall_s"]:
                    best[variant] = result
    first = next(iter(best.values()))
    print(f"{time.strftime('%Y-%m-%d')} model {args.model}, {args.n} prompts of {first['prompt_tokens'][0]}–"
          f"{first['prompt_tokens'][1]} tokens, batch {args.batch_size}, max_new_tokens {args.max_new_tokens}, "
          f"torch {first['torch']} threads {first['threads']}, fastest of {args.repeats}, load "
          f"{os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    print(f"{'variant':<18} {'tokens':>6} {'wall_s':>7} {'tokens/s':>8} {'slower':>7} {'peak_MB':>8}")
    tps = {v: r["tokens"] / r["wall_s"] if r["wall_s"] else 0.0 for v, r in best.items()}
    for variant, r in best.items():
        slower = f"{tps['bare'] / tps[variant]:.2f}x" if "bare" in tps and tps[variant] else "-"
        print(f"{variant:<18} {r['tokens']:>6} {r['wall_s']:>7.1f} {tps[variant]:>8.1f} {slower:>7} {r['peak_rss_mb']:>8}")


if __name__ == "__main__":
    main()
