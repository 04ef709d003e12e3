"""Stage generate: predict the next version of every test example with one predictor.

    python -m stages.generate --predictor NAME

Reads `params.yaml: generate:` (max_new_tokens, batch_size, threads, predictors.NAME), `process.format`
(the answer format: what the model is asked, how its answer becomes the next version) and
data/split/test.jsonl; writes data/generate/NAME.jsonl (one generation record per example, in
test-set order), metrics/generate/NAME.json and, measured (not DVC outputs),
metrics/timing/generate/NAME.json (latency p50/p95, first token, tokens/s, machine),
NAME.answers.jsonl (per answer) and the accuracy-against-latency view metrics/timing/report/;
and data/retry/NAME.json (the failures it tolerated, which the next `dvc repro` asks again:
nep.predictors.retry). A killed run resumes where it stopped (nep.predictors.runner).
"""

from __future__ import annotations

import argparse
import logging
import subprocess
import sys

from nep.config.params import load_section
from nep.predictors.base import Settings
from nep.predictors.runner import generate
from nep.util import paths
from nep.util.console import banner, setup_logging
from nep.util.errors import NepError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--predictor", required=True, help="a key of params.yaml generate.predictors")
    args = parser.parse_args()
    setup_logging()
    cfg = load_section("generate")
    predictors = cfg.predictors
    if args.predictor not in predictors:
        raise NepError(f"params.yaml: no generate.predictors.{args.predictor} (have: {', '.join(predictors)})")
    kind = predictors[args.predictor].get("kind", "?")
    banner(f"generate@{args.predictor}", f"predict the next version of each test example ({kind})", [paths.TEST])
    settings = Settings.of(cfg, load_section("process").format)
    metrics = generate(args.predictor, predictors[args.predictor], settings,  # a known failure: one line (run_main)
                       retry_path=paths.retry(args.predictor))
    logging.getLogger("generate").info("%s: %s", args.predictor, metrics)
    # the accuracy-against-latency view (metrics/timing/report/, measured, not a DVC output) with this
    # run's times; a separate process, so that this stage's outputs never depend on its code
    subprocess.run([sys.executable, "-m", "nep.evaluate.latency_report", args.predictor], check=False)


if __name__ == "__main__":
    from nep.util.cli import run_main

    run_main(main, "generate", resumable=True)
