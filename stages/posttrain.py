"""posttrain: DPO or GRPO (trl) on top of the SFT adapter, rewarded by nep's own metrics.

    python -m stages.posttrain                      # or via dvc repro
    dvc exp run -S posttrain.method=dpo             # re-runs posttrain and what follows (generate@posttrained...)

Reads data/split/train.jsonl and models/finetune/; writes the adapter to models/posttrain/
(`method: none`: a copy of models/finetune/), the scored candidates and DPO pairs to
data/posttrain/{candidates,pairs}.jsonl, counts and mean rewards to metrics/posttrain.json,
DVCLive's step curves (loss, reward, kl, reward margin...) to metrics/posttrain/plots/metrics/,
and measured times to metrics/timing/posttrain.json (not a DVC output).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from nep.config.params import load_section
from nep.config.schema import Posttrain
from nep.core.examples import read_training_set
from nep.core.formats import PAPER, AnswerFormat, answer_format
from nep.util import paths
from nep.util.console import setup_logging
from nep.util.errors import NepError
from nep.util.jsonl import flat_counts, write_jsonl, write_metrics

CURVES_HEADER = ("loss", "reward", "kl", "reward_margin")  # curves dvc.yaml plots: header only when nothing logged them


def posttrain(
    cfg: Posttrain,
    *,
    train_path: str | Path = paths.TRAIN,
    sft_dir: str | Path = paths.FINETUNE,
    out_dir: str | Path = paths.POSTTRAIN,
    data_dir: str | Path = paths.POSTTRAIN_DATA,
    curves_dir: str | Path = paths.POSTTRAIN_CURVES,
    metrics_path: str | Path | None = None,
    timing_path: str | Path | None = None,
    progress: bool = True,
    fmt: AnswerFormat = PAPER,
) -> dict[str, Any]:
    """Post-train the adapter in `sft_dir` on the examples in `train_path`; returns the metrics."""
    from nep.train.posttrain import run_posttrain
    from nep.util import live as dvclive

    drops: Counter = Counter()
    records = read_training_set(train_path, drops)
    if not (Path(sft_dir) / "adapter_config.json").exists():
        raise NepError(f"{sft_dir}: no fine-tuned adapter (run the finetune stage first)")
    out_dir, data_dir, curves_dir = Path(out_dir), Path(data_dir), Path(curves_dir)
    dvclive.clean(out_dir, data_dir, curves_dir)
    live = dvclive.start(curves_dir.parent.parent) if cfg.method != "none" else None  # the step curves
    result = run_posttrain(records, sft_dir, out_dir, cfg, live=live, progress=progress, fmt=fmt)
    if live is not None:
        dvclive.finish(live, summary=False)  # the stage's metrics are metrics/posttrain.json
    curves_dir.mkdir(parents=True, exist_ok=True)
    for name in CURVES_HEADER:  # a declared output must exist even when a curve got no row
        path = curves_dir / f"{name}.tsv"
        if not path.exists():
            path.write_text(f"step\t{name}\n")
    data_dir.mkdir(parents=True, exist_ok=True)
    write_jsonl(data_dir / "candidates.jsonl", result.candidates)
    write_jsonl(data_dir / "pairs.jsonl", result.pairs)
    metrics = {**result.metrics, "train_examples": len(records) + sum(drops.values()), **flat_counts("dropped", drops)}
    # under "posttraining": its keys (train_loss, steps...) share no `dvc exp show` column with finetune's or the params
    write_metrics(metrics_path or paths.metrics("posttrain"), {"posttraining": metrics})
    write_metrics(timing_path or paths.timing("posttrain"), result.timing)
    return metrics


def main() -> None:
    setup_logging()
    metrics = posttrain(load_section("posttrain"), fmt=answer_format(load_section("process").format))  # a known failure: one line
    logging.getLogger("stages.posttrain").info("posttrain: %s", metrics)


def banner() -> None:
    from nep.util.console import banner as show

    method = load_section("posttrain").method
    does = "copy the SFT adapter (posttrain.method: none)" if method == "none" else f"post-train the SFT adapter ({method})"
    show("posttrain", does, [paths.FINETUNE, paths.TRAIN])


if __name__ == "__main__":
    from nep.util.cli import run_main

    run_main(main, "posttrain", banner=banner)
