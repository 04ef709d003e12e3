"""Stage evaluate: score every predictor's generations and judgments (nep.evaluate.evaluation).

Run: `python -m stages.evaluate` (or `dvc repro evaluate`). Reads data/generate/<p>.jsonl and
data/judge/<p>.jsonl for each predictor in `generate.predictors`, with `params.yaml: evaluate:`
(protocol, context_lines, reference, bootstrap_samples, seed), and writes
- metrics/evaluate.json: the headline, per predictor p: `p.n` and, for the paper's metrics plus
  llm_judge and delta_chrf, `p.<m>`, its 95% interval `p.<m>_lo`/`p.<m>_hi` and, except for the
  reference predictor, the paired p-value against it `p.<m>_p`;
- metrics/evaluate/details.json: every other metric and count, flat (`p.<name>`);
- metrics/evaluate/predictors.json and languages.json: the tables dvc.yaml's plots draw;
- metrics/evaluate/coverage.json and risk_coverage.json: each headline metric on the surest
  100/80/50/20% of the answers, and 1 − exact match against coverage (nep.evaluate.coverage).
- metrics/evaluate/examples.html: every test example's true edit and each predictor's edit as
  diffs, with their scores (nep/evaluate/examples_page.py; the report links it).
Metric definitions: nep/evaluate/metrics.py (the paper's), nep/evaluate/refined.py (nep's variants), README "Metrics".
"""

from __future__ import annotations

from pathlib import Path

from nep.config.params import load_section
from nep.evaluate.evaluation import HEADLINE, Evaluation, evaluate
from nep.util import paths
from nep.util.jsonl import write_metrics


def write(ev: Evaluation, generations: dict[str, Path], protocol: str) -> None:
    from nep.evaluate.examples_page import write_page

    write_metrics(paths.metrics("evaluate"), ev.headline)
    write_metrics(paths.metrics("evaluate", "details"), ev.details)
    write_metrics(paths.metrics("evaluate", "predictors"), {"rows": ev.predictor_rows})
    write_metrics(paths.metrics("evaluate", "languages"), {"rows": ev.language_rows})
    write_metrics(paths.metrics("evaluate", "coverage"), {"rows": ev.coverage_rows})
    write_metrics(paths.metrics("evaluate", "risk_coverage"), {"rows": ev.risk_rows})
    write_page(paths.EXAMPLES_PAGE, ev, generations, protocol=protocol)


def main() -> None:
    cfg = load_section("evaluate")
    inputs = {name: (paths.generations(name), paths.judgments(name)) for name in load_section("generate").predictors}
    ev = evaluate(
        inputs,
        reference=cfg.reference,
        context_lines=cfg.context_lines,
        bootstrap_samples=cfg.bootstrap_samples,
        seed=cfg.seed,
        protocol=cfg.protocol,
        min_confidence=cfg.min_confidence,
    )
    write(ev, {name: gen for name, (gen, _) in inputs.items()}, cfg.protocol)
    for row in ev.predictor_rows:
        shown = " ".join(f"{m}={row[m]:.3f} [{row[f'{m}_lo']:.3f}, {row[f'{m}_hi']:.3f}]" for m in HEADLINE)
        print(f"{row['predictor']}: n={row['n']} {shown}")
    for row in ev.coverage_rows:  # the surer half, where the predictor gives confidences
        if row["coverage"] == 0.5:
            shown = " ".join(f"{m}={row[m]:.3f}" for m in HEADLINE)
            print(f"{row['predictor']} on its surest 50%: n={row['n']} {shown}")


def banner() -> None:
    from nep.util.console import banner as show

    n = len(load_section("generate").predictors)
    show("evaluate", f"score {n} predictors (95% bootstrap intervals, paired tests)",
         [paths.DATA / "generate", paths.DATA / "judge"])


if __name__ == "__main__":
    from nep.util.cli import run_main

    run_main(main, "evaluate", banner=banner)
