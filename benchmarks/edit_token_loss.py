"""Where a fine-tuned model's loss goes: on the answer's copied lines, on the lines the edit changes, and
on EOS, before and after fine-tuning (teacher-forced, the training sequence of nep.train.sft.training_row).

    python -m benchmarks.edit_token_loss models/finetune data/split/test.jsonl --limit 30

"before" is the base model of `models/finetune` with the markers added as in training (their rows at
the mean embedding), "after" is the adapter on top. A model that copies the current version and stops
lowers the copied-line and EOS losses and leaves the changed-line loss where it was; one that learned
the edit lowers that too. `first_changed_top1` is the share of examples whose first changed token is
the model's argmax (greedy would start the edit there). Prints one JSON object.
"""

from __future__ import annotations

import argparse
import difflib
import json
import math
from pathlib import Path


def changed_spans(current: str, nxt: str) -> list[tuple[int, int]]:
    """Character ranges of `nxt` on lines that are not copied from `current` (inserted or replaced)."""
    a, b = current.splitlines(keepends=True), nxt.splitlines(keepends=True)
    starts = [0]
    for line in b:
        starts.append(starts[-1] + len(line))
    spans = []
    for tag, _, _, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes():
        if tag in ("insert", "replace") and j2 > j1:
            spans.append((starts[j1], starts[j2]))
    return spans


def token_losses(model, tokenizer, example: dict) -> dict[str, list[float]] | None:
    import torch

    from nep.core.prompts import model_boundary
    from nep.train.sft import training_row

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
    parser.add_argument("model_dir", type=Path, help="the finetune stage's output")
    parser.add_argument("examples", type=Path, help="a split's JSONL (data/split/test.jsonl or train.jsonl)")
    parser.add_argument("--limit", type=int, default=30, help="first N examples (file order)")
    parser.add_argument("--max-tokens", type=int, default=1024, help="skip longer training sequences")
    args = parser.parse_args(argv)

    from nep.train.model import add_markers, load_base_hf, load_finetuned, read_metadata
    from nep.train.sft import training_row

    examples = []
    for line in args.examples.read_text().splitlines():
        e = json.loads(line)
        examples.append({"prompt": e["prompt"], "completion": e["next"], "current": e["current"]})
    finetuned, tokenizer = load_finetuned(args.model_dir, device="cpu")
    examples = [e for e in examples if len(training_row(tokenizer, e["prompt"], e["completion"])["input_ids"]) <= args.max_tokens]
    examples = examples[: args.limit]
    base, base_tokenizer = load_base_hf(read_metadata(args.model_dir)["base_model"], device="cpu")
    add_markers(base_tokenizer, base)
    base.eval()
    report = {"examples": len(examples)}
    for name, model in (("before", base), ("after", finetuned)):
        rows = [r for e in examples if (r := token_losses(model, tokenizer, e)) is not None]
        report[name] = summarize(rows)
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
