"""Stage generate: predict the next version of every test example with one predictor.

    python -m stages.generate --predictor NAME

Reads `params.yaml: generate:` (max_new_tokens, batch_size, predictors.NAME) and
data/split/test.jsonl; writes data/generate/NAME.jsonl (one generation record per example, in
test-set order) and metrics/generate/NAME.json. Examples are batched by prompt length to waste
little padding.
"""

from __future__ import annotations

import argparse
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tqdm import tqdm

from nep.extract import extract_next_version
from nep.jsonl import InputError, flat_counts, read_jsonl, write_jsonl, write_metrics
from nep.params import load_params
from nep.predictors import Predictor, PropagatePredictor, build_predictor

REQUIRED_FIELDS = ("id", "prompt", "next")


def load_examples(path: str | Path) -> list[dict[str, Any]]:
    examples = []
    for n, ex in enumerate(read_jsonl(path), 1):
        missing = [f for f in REQUIRED_FIELDS if not isinstance(ex.get(f), str)]
        if missing:
            raise InputError(f"{path}: record {n} (id {ex.get('id')!r}) lacks string field(s) {', '.join(missing)}")
        examples.append(ex)
    return examples


def run_predictor(
    predictor: Predictor, examples: list[dict[str, Any]], *, max_new_tokens: int, batch_size: int, desc: str = ""
) -> list[dict[str, Any]]:
    """Generation records for `examples` (in their order), predicted in batches of similar
    prompt length."""
    if batch_size < 1:
        raise ValueError(f"generate.batch_size must be ≥ 1, got {batch_size}")
    order = sorted(range(len(examples)), key=lambda i: len(examples[i]["prompt"]))
    records: list[dict[str, Any] | None] = [None] * len(examples)
    with tqdm(total=len(examples), desc=desc or "generate", unit="ex") as bar:
        for start in range(0, len(order), batch_size):
            idx = order[start : start + batch_size]
            batch = [examples[i] for i in idx]
            predictions = predictor.predict(batch, max_new_tokens=max_new_tokens)
            if len(predictions) != len(batch):
                raise RuntimeError(f"predictor returned {len(predictions)} answers for {len(batch)} examples")
            style = predictor.style
            for i, ex, pred in zip(idx, batch, predictions):
                extraction = extract_next_version(pred.raw_output, style)
                records[i] = {
                    "id": ex["id"],
                    "prompt": ex["prompt"],
                    "output": extraction.text if extraction.ok else "",
                    "ground_truth": ex["next"],
                    "language": ex.get("language", ""),
                    "latency_s": round(pred.latency_s, 6),
                    "output_tokens": pred.output_tokens,
                    "raw_output": pred.raw_output,
                    "extracted": extraction.ok,
                    "extraction": pred.skipped or extraction.method,
                }
            bar.update(len(batch))
    return [r for r in records if r is not None]


def summarize(records: list[dict[str, Any]], wall_s: float) -> dict[str, Any]:
    n = len(records)
    tokens = sum(r["output_tokens"] for r in records)
    extracted = sum(r["extracted"] for r in records)
    return {
        "examples": n,
        "extracted": extracted,
        "unextracted": n - extracted,
        "extracted_rate": extracted / n if n else 0.0,
        "mean_latency_s": sum(r["latency_s"] for r in records) / n if n else 0.0,
        "output_tokens": tokens,
        "wall_s": round(wall_s, 3),
        "tokens_per_s": tokens / wall_s if wall_s > 0 else 0.0,
        **flat_counts("extraction", Counter(r["extraction"] for r in records)),
    }


def generate(
    *,
    predictor: str,
    predictors: dict[str, Any],
    max_new_tokens: int = 512,
    batch_size: int = 8,
    test_path: str | Path = "data/split/test.jsonl",
    out_dir: str | Path = "data/generate",
    metrics_dir: str | Path = "metrics/generate",
) -> dict[str, Any]:
    """Run predictor `predictor` (a key of `predictors`) over the test set; write its records and
    metrics; return the metrics."""
    if predictor not in predictors:
        raise KeyError(f"params.yaml: no generate.predictors.{predictor} (have: {', '.join(predictors)})")
    model = build_predictor(predictor, predictors[predictor])
    examples = load_examples(test_path)
    start = time.perf_counter()
    records = run_predictor(model, examples, max_new_tokens=max_new_tokens, batch_size=batch_size, desc=predictor)
    metrics = summarize(records, time.perf_counter() - start)
    if isinstance(model, PropagatePredictor):
        metrics.update(flat_counts("propagate_rule", model.rules))
    write_jsonl(Path(out_dir) / f"{predictor}.jsonl", records)
    write_metrics(Path(metrics_dir) / f"{predictor}.json", metrics)
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictor", required=True, help="a key of params.yaml generate.predictors")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    params = load_params("generate")
    metrics = generate(
        predictor=args.predictor,
        predictors=params.get("predictors") or {},
        max_new_tokens=int(params.get("max_new_tokens", 512)),
        batch_size=int(params.get("batch_size", 8)),
    )
    logging.getLogger("generate").info("%s: %s", args.predictor, metrics)


if __name__ == "__main__":
    main()
