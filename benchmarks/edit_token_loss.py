"""Where a fine-tuned model's loss goes: on the answer's copied lines, on the lines the edit changes, and
on EOS, before and after fine-tuning (teacher-forced, the training sequence of nep.train.sft.training_row).

    python -m benchmarks.edit_token_loss models/finetune data/split/test.jsonl --limit 30
    python -m benchmarks.edit_token_loss data/split/test.jsonl --limit 30 --models A B   # compare adapters

"before" is the base model of `models/finetune` with the markers added as in training (their rows at
the mean embedding), "after" is the adapter on top. A model that copies the current version and stops
lowers the copied-line and EOS losses and leaves the changed-line loss where it was; one that learned
the edit lowers that too. `first_changed_top1` is the share of examples whose first changed token is
the model's argmax (greedy would start the edit there). Prints one JSON object. With `--models`, every
adapter (of one base model, e.g. trained with and without `finetune.changed_token_weight`) is scored
on the same examples, "after:<dir>" each.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path


def token_losses(model, tokenizer, example: dict) -> dict[str, list[float]] | None:
    import torch

    from nep.core.prompts import model_boundary
    from nep.train.sft import changed_spans, training_row

    row = training_row(tokenizer, example["prompt"], example["completion"])
    n_prompt = len(row["input_ids"]) - sum(row["completion_mask"])
    lead = model_boundary(example["prompt"])[1]  # the marker's newline opens the answer's tokens
    enc = tokenizer(lead + example["completion"], add_special_tokens=False, return_offsets_mapping=True)
    if enc["input_ids"] != row["input_ids"][n_prompt:-1]:
        return None
    spans = [(s + len(lead), e + len(lead)) for s, e in changed_spans(example["current"], example["completion"])]
    ids = torch.tensor([row["input_ids"]])
    with torch.inference_mode():
        logits = model(input_ids=ids).logits[0, n_prompt - 1 : -1].float()
    targets = ids[0, n_prompt:]
    losses = torch.nn.functional.cross_entropy(logits, targets, reduction="none").tolist()
    top1 = (logits.argmax(-1) == targets).tolist()
    out: dict[str, list[float]] = {"copied": [], "changed": [], "eos": [losses[-1]], "first_changed_top1": []}
    first = True
    for (start, end), loss, hit in zip(enc["offset_mapping"], losses[:-1], top1[:-1], strict=True):
        changed = any(s <= start < e or s < end <= e for s, e in spans)
        out["changed" if changed else "copied"].append(loss)
        if changed and first:
            out["first_changed_top1"].append(float(hit))
            first = False
    return out


def summarize(rows: list[dict[str, list[float]]]) -> dict[str, float]:
    result = {}
    for key in ("copied", "changed", "eos", "first_changed_top1"):
        values = [v for r in rows for v in r[key]]
        result[key] = round(sum(values) / len(values), 4) if values else math.nan
        if key != "first_changed_top1":
            result[f"{key}_tokens"] = len(values)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.edit_token_loss", description=__doc__.split("\n\n")[0])
    parser.add_argument("paths", type=Path, nargs="+",
                        help="MODEL_DIR EXAMPLES (the finetune stage's output, a split's JSONL), or EXAMPLES with --models")
    parser.add_argument("--models", type=Path, nargs="+", help="several finetune outputs of one base model")
    parser.add_argument("--limit", type=int, default=30, help="first N examples (file order)")
    parser.add_argument("--max-tokens", type=int, default=1024, help="skip longer training sequences")
    args = parser.parse_args(argv)
    if args.models:
        if len(args.paths) != 1:
            parser.error("with --models, give only the examples file")
        model_dirs, examples_path = list(args.models), args.paths[0]
    elif len(args.paths) == 2:
        model_dirs, examples_path = [args.paths[0]], args.paths[1]
    else:
        parser.error("give MODEL_DIR EXAMPLES, or EXAMPLES --models DIR...")

    from nep.train.model import add_markers, load_base_hf, load_finetuned, read_metadata
    from nep.train.sft import training_row

    examples = []
    for line in examples_path.read_text().splitlines():
        e = json.loads(line)
        examples.append({"prompt": e["prompt"], "completion": e["next"], "current": e["current"]})
    finetuned, tokenizer = load_finetuned(model_dirs[0], device="cpu")
    examples = [e for e in examples if len(training_row(tokenizer, e["prompt"], e["completion"])["input_ids"]) <= args.max_tokens]
    examples = examples[: args.limit]
    base, base_tokenizer = load_base_hf(read_metadata(model_dirs[0])["base_model"], device="cpu")
    add_markers(base_tokenizer, base)
    base.eval()
    report: dict = {"examples": len(examples)}
    report["before"] = summarize([r for e in examples if (r := token_losses(base, tokenizer, e)) is not None])
    for i, model_dir in enumerate(model_dirs):
        model = finetuned if i == 0 else load_finetuned(model_dir, device="cpu")[0]
        rows = [r for e in examples if (r := token_losses(model, tokenizer, e)) is not None]
        report["after" if len(model_dirs) == 1 else f"after:{model_dir}"] = summarize(rows)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
