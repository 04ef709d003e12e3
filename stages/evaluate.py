"""Stage evaluate: score every predictor's generations and judgments.

Run: `python -m stages.evaluate` (or `dvc repro evaluate`). Reads data/generate/<p>.jsonl and
data/judge/<p>.jsonl for each predictor in params.yaml `generate.predictors`, and writes
metrics/evaluate.json (flat: `<predictor>.<metric>`), metrics/evaluate/predictors.json (one row per
predictor) and metrics/evaluate/languages.json (one row per predictor and language), which
dvc.yaml plots. Metric definitions: nep/metrics.py.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

from tqdm import tqdm

from nep.jsonl import InputError, flat_counts, read_jsonl, write_metrics
from nep.metrics import MAIN_METRICS, ExampleScore, score_example, summarize
from nep.params import load_params
from nep.prompts import parse_prompt

GENERATION_FIELDS = ("id", "prompt", "output", "ground_truth")


def read_judgments(path: Path, drops: Counter) -> dict[str, int | None]:
    """id → judgment (1/0/None). Judgments other than 1/0/null are counted and read as None."""
    if not path.exists():
        raise InputError(f"{path}: judgment file not found (run `dvc repro judge` first)")
    judgments: dict[str, int | None] = {}
    for rec in read_jsonl(path, drops):
        rid, value = rec.get("id"), rec.get("judgment")
        if not isinstance(rid, str):
            drops["judgment_without_id"] += 1
            continue
        if rid in judgments:
            raise InputError(f"{path}: duplicate judgment for id {rid}")
        if isinstance(value, bool):
            value = int(value)
        if value not in (0, 1, None):
            drops["bad_judgment"] += 1
            value = None
        judgments[rid] = None if value is None else int(value)
    return judgments


def score_predictor(
    generations_path: Path, judgments_path: Path, *, context_lines: int
) -> tuple[list[ExampleScore], dict[str, int]]:
    """Example scores of one predictor, and its counts (drops, judge coverage)."""
    drops: Counter = Counter()
    judgments = read_judgments(judgments_path, drops)
    scores: list[ExampleScore] = []
    seen: set[str] = set()
    records = list(read_jsonl(generations_path, drops))
    for rec in tqdm(records, desc=f"evaluate {generations_path.stem}", unit="ex", leave=False):
        if any(not isinstance(rec.get(f), str) for f in GENERATION_FIELDS):
            drops["missing_field"] += 1
            continue
        if rec["id"] in seen:
            raise InputError(f"{generations_path}: duplicate generation id {rec['id']}")
        seen.add(rec["id"])
        try:
            sections = parse_prompt(rec["prompt"])
        except ValueError:
            drops["bad_prompt"] += 1
            continue
        scores.append(
            score_example(
                original=sections["original"],
                current=sections["current"],
                ground_truth=rec["ground_truth"],
                prediction=rec["output"],
                extracted=bool(rec.get("extracted", True)),
                judgment=judgments.get(rec["id"]),
                language=str(rec.get("language") or "unknown"),
                context_lines=context_lines,
                latency_s=rec.get("latency_s"),
                output_tokens=rec.get("output_tokens"),
            )
        )
    if not scores:
        raise InputError(f"{generations_path}: no usable generation records ({dict(drops) or 'empty file'})")
    unmatched = len(judgments.keys() - seen)
    if judgments and unmatched == len(judgments):
        raise InputError(
            f"{judgments_path}: no judgment id matches {generations_path} (stale judgments? re-run judge)"
        )
    counts = {
        "judge_missing": len(seen - judgments.keys()),
        "judge_null": sum(judgments.get(i, 0) is None for i in seen),
        "judge_unmatched": unmatched,
        **flat_counts("dropped", drops),
    }
    return scores, counts


def evaluate(
    *,
    predictors: list[str],
    generate_dir: str | Path = "data/generate",
    judge_dir: str | Path = "data/judge",
    metrics_path: str | Path = "metrics/evaluate.json",
    tables_dir: str | Path = "metrics/evaluate",
    context_lines: int = 3,
) -> dict[str, Any]:
    """Score each predictor; write the flat metrics and the two plot tables. Returns the metrics."""
    if not predictors:
        raise InputError("no predictors to evaluate (params.yaml generate.predictors is empty)")
    metrics: dict[str, Any] = {}
    predictor_rows, language_rows = [], []
    for name in predictors:
        scores, counts = score_predictor(
            Path(generate_dir) / f"{name}.jsonl", Path(judge_dir) / f"{name}.jsonl", context_lines=context_lines
        )
        summary = {**summarize(scores), **counts}
        metrics.update({f"{name}.{k}": v for k, v in summary.items()})
        predictor_rows.append({"predictor": name, "n": summary["n"], **{m: summary[m] for m in MAIN_METRICS}})
        by_language: dict[str, list[ExampleScore]] = defaultdict(list)
        for s in scores:
            by_language[s.language].append(s)
        for language, group in sorted(by_language.items()):
            lang_summary = summarize(group)
            language_rows.append(
                {
                    "predictor": name,
                    "language": language,
                    "group": f"{language} / {name}",
                    "n": lang_summary["n"],
                    **{m: lang_summary[m] for m in MAIN_METRICS},
                }
            )
    write_metrics(metrics_path, metrics)
    tables = Path(tables_dir)
    tables.mkdir(parents=True, exist_ok=True)
    write_metrics(tables / "predictors.json", {"rows": predictor_rows})
    write_metrics(tables / "languages.json", {"rows": language_rows})
    return metrics


def main() -> None:
    params = load_params("evaluate")
    predictors = list(load_params("generate").get("predictors") or {})
    metrics = evaluate(predictors=predictors, context_lines=int(params.get("context_lines", 3)))
    for name in predictors:
        row = {m: round(metrics[f"{name}.{m}"], 3) for m in MAIN_METRICS}
        print(f"{name}: n={metrics[f'{name}.n']} {row}")


if __name__ == "__main__":
    main()
