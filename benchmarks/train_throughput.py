"""Training throughput of the tiny-random smoke model (LoRA, hf backend) on this machine.

Run: `python -m benchmarks.train_throughput [--steps 6] [--lengths 256 1024 4096] [--threads N]`.

Examples are real training texts built from this project's own source files (original → current →
next, as the process stage builds them), cut to exactly each sequence length. Each run trains `--steps`
optimizer steps of batch 1 × gradient accumulation 4 after one warm-up step, with the paper's LoRA
settings (r 16, q/k/v/o + gate/up/down, embeddings trained) and prints tokens/s. The numbers say
how long the offline smoke default takes; they say nothing about real models (see README).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from nep.edits import compute_chunks, current_version
from nep.prompts import build_training_text
from nep.tiny import build_tiny_model
from nep.training import FinetuneConfig, TinyConfig, encode_examples, prepare_hf, train


def source_examples() -> list[dict[str, str]]:
    """One example per nep/*.py file: the file with two 3-line blocks removed as the original."""
    examples = []
    for path in sorted(Path(__file__).resolve().parents[1].glob("nep/*.py")):
        lines = path.read_text().splitlines(keepends=True)
        if len(lines) < 30:
            continue
        old = "".join(lines[:10] + lines[13:20] + lines[23:])
        new = "".join(lines)
        if len(compute_chunks(old, new)) < 2:
            continue
        t = build_training_text(old, current_version(old, new), new, path=path.name)
        examples.append({"prompt": t.prompt, "completion": t.completion})
    return examples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096])
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    examples = source_examples()
    t = TinyConfig()  # the finetune stage's tiny-random sizes
    with tempfile.TemporaryDirectory() as tmp:
        tiny = build_tiny_model(
            [e["prompt"] + e["completion"] for e in examples], Path(tmp) / "tiny", vocab_size=t.vocab_size,
            hidden_size=t.hidden_size, num_layers=t.num_layers, num_heads=t.num_heads,
        )
        print(f"tiny-random: hidden {t.hidden_size}, {t.num_layers} layers, vocab {t.vocab_size}; "
              f"torch threads {torch.get_num_threads()}; device cpu")
        print(f"{'seq len':>8} {'steps':>6} {'tokens':>8} {'seconds':>8} {'tokens/s':>9}")
        for length in args.lengths:
            cfg = FinetuneConfig.from_params({"tiny": {"max_steps": args.steps, "max_seq_length": length}})
            model, tokenizer = prepare_hf(tiny, cfg, "cpu")
            full, _ = encode_examples(examples, tokenizer, 1 << 20)
            # Throughput per length: every example cut to exactly `length` tokens, all of them labelled.
            cut = [e["input_ids"][:length] for e in full if len(e["input_ids"]) >= length]
            if not cut:
                raise SystemExit(f"no source example has {length} tokens")
            n = 4 * (args.steps + 1)
            encoded = [{"input_ids": ids, "labels": list(ids)} for ids in (cut * n)[:n]]
            warm = FinetuneConfig.from_params({"tiny": {"max_steps": 1}})
            train(model, encoded[:4], warm, pad_token_id=tokenizer.pad_token_id, progress=False)
            start = time.perf_counter()
            result = train(model, encoded[4:], cfg, pad_token_id=tokenizer.pad_token_id, progress=False)
            seconds = time.perf_counter() - start
            print(f"{length:>8} {result.steps:>6} {result.tokens:>8} {seconds:>8.2f} {result.tokens / seconds:>9.0f}")


if __name__ == "__main__":
    main()
