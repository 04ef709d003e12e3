"""Generation throughput of the tiny smoke model on the CPU: batched against one-at-a-time.

    python -m benchmarks.generate_throughput [--examples 16] [--max-new-tokens 64] [--batch-sizes 1 4 8 16]

Builds the `tiny-random` model (nep.train.tiny, the finetune stage's default sizes) from synthetic
next-edit examples, then generates greedily with nep.predictors.hf.HFPredictor at each batch size
and prints output tokens per second (fastest of `--repeats` interleaved runs), each batch size
going through the predictor's own batching (`generate.batch_size`, by prompt length). Goal:
batched ≥ 4× one-at-a-time. Batched and one-at-a-time outputs are checked to be identical.
"""

from __future__ import annotations

import argparse
import tempfile
import time

from nep.core.prompts import build_training_text
from nep.predictors.base import Settings
from nep.predictors.hf import HFPredictor


def synthetic_examples(n: int) -> list[dict]:
    """n examples of varied length: a module of small functions, one call site already updated."""
    out = []
    for i in range(n):
        funcs = "".join(f"def step_{j}(value):\n    return transform(value, {j})\n\n" for j in range(3 + i % 5))
        original = f"import math\n\n{funcs}"
        current = original.replace("transform(value, 0)", "transform(value, 0, strict=True)")
        nxt = current.replace("transform(value, 1)", "transform(value, 1, strict=True)")
        t = build_training_text(original, current, nxt, path=f"module_{i}.py")
        out.append({"id": str(i), "prompt": t.prompt, "text": t.text, "path": f"module_{i}.py", "next": nxt})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=64)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--repeats", type=int, default=3, help="runs per batch size; the fastest counts")
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: nep.util.device's auto)")
    args = parser.parse_args()

    import torch

    from nep.config.schema import FinetuneTiny
    from nep.train.tiny import build_tiny_model

    examples = synthetic_examples(args.examples)
    t = FinetuneTiny()  # the finetune stage's default tiny-random sizes
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = build_tiny_model(
            [e["text"] for e in examples], tmp, vocab_size=t.vocab_size, hidden_size=t.hidden_size,
            num_layers=t.num_layers, num_heads=t.num_heads,
        )
        predictor = HFPredictor(model=str(model_dir), device="cpu", chat=False)
        todo = list(range(len(examples)))
        list(predictor.predict(examples, todo[:2], Settings.of(max_new_tokens=4, threads=args.threads)))  # warm-up
        outputs: dict[int, list[str]] = {}
        best: dict[int, float] = {}
        tokens: dict[int, int] = {}
        for _ in range(args.repeats):  # interleaved, so load changes hit every batch size alike
            for bs in args.batch_sizes:
                start = time.perf_counter()
                settings = Settings.of(max_new_tokens=args.max_new_tokens, batch_size=bs, threads=args.threads)
                answers = dict(pair for group in predictor.predict(examples, todo, settings) for pair in group)
                preds = [answers[i] for i in todo]
                best[bs] = min(best.get(bs, float("inf")), time.perf_counter() - start)
                outputs[bs] = [p.raw_output for p in preds]
                tokens[bs] = sum(p.output_tokens for p in preds)
        rows = [(bs, tokens[bs], best[bs], tokens[bs] / best[bs]) for bs in args.batch_sizes]
    base = rows[0][3]
    print(f"tiny-random (hidden {t.hidden_size}, {t.num_layers} layers), {args.examples} examples, "
          f"max_new_tokens {args.max_new_tokens}, torch threads {torch.get_num_threads()}")
    print(f"{'batch':>5} {'tokens':>7} {'wall_s':>7} {'tokens/s':>9} {'speedup':>8}")
    for bs, tokens, wall, tps in rows:
        print(f"{bs:>5} {tokens:>7} {wall:>7.2f} {tps:>9.1f} {tps / base:>7.1f}x")
    same = all(o == outputs[args.batch_sizes[0]] for o in outputs.values())
    print(f"batched outputs identical to one-at-a-time: {same}")


if __name__ == "__main__":
    main()
