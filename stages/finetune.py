"""finetune: LoRA supervised fine-tuning (trl SFTTrainer) of `finetune.base_model` on data/split/train.jsonl,
in the answer format `process.format` (nep.core.formats).

    python -m stages.finetune                                          # one CPU or GPU (or via dvc repro)
    accelerate launch --multi_gpu --num_processes 4 -m stages.finetune # 4 GPUs (or, without CUDA, 4 CPU
                                                                       # processes over gloo); same global batch

Writes the adapter, tokenizer and nep_finetune.json to models/finetune/ (plus base/ for the
tiny-random smoke model and merged/ with `merge: true`), DVCLive's final values and per-step
curves to metrics/finetune/ (metrics.json, plots/metrics/), and measured times to
metrics/timing/finetune.json (not a DVC output).
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import Any

from nep.config.params import load_section
from nep.config.schema import Finetune
from nep.core.examples import read_training_set
from nep.core.formats import PAPER, AnswerFormat, answer_format
from nep.train.sft import run_finetune
from nep.util import paths
from nep.util.console import setup_logging
from nep.util.jsonl import flat_counts, write_metrics

METRICS_DIR = paths.METRICS / "finetune"


def finetune(
    cfg: Finetune,
    *,
    train_path: str | Path = paths.TRAIN,
    out_dir: str | Path = paths.FINETUNE,
    metrics_dir: str | Path = METRICS_DIR,
    timing_path: str | Path | None = None,
    progress: bool = True,
    fmt: AnswerFormat = PAPER,
) -> dict[str, Any]:
    """Train on the processed examples in `train_path`; save the model to `out_dir`, DVCLive's
    metrics.json and step curves (plots/metrics/) to `metrics_dir`, measured times to
    `timing_path` (default nep.util.paths.timing("finetune")); prompts and completions in the answer
    format `fmt` (process.format). Returns the metrics."""
    from nep.util import live as dvclive
    from nep.util.device import distributed_state

    drops: Counter = Counter()
    records = read_training_set(train_path, drops)
    out_dir, metrics_dir = Path(out_dir), Path(metrics_dir)
    state = distributed_state()
    main_process = state.is_main_process
    if main_process:
        dvclive.clean(out_dir, metrics_dir)
    state.wait_for_everyone()
    live = dvclive.start(metrics_dir) if main_process else None  # metrics.json and the step curves
    result = run_finetune(records, out_dir, cfg, live=live, progress=progress, fmt=fmt)
    metrics = result.metrics
    metrics.update(flat_counts("dropped", drops))
    metrics["examples"] += sum(drops.values())
    metrics["examples_dropped"] += sum(drops.values())
    if live is not None:
        for name, value in metrics.items():
            live.summary[name] = value
        dvclive.finish(live)
        write_metrics(timing_path or paths.timing("finetune"), result.timing)
    return metrics


def main() -> None:
    setup_logging()
    fmt = answer_format(load_section("process").format)
    metrics = finetune(load_section("finetune"), fmt=fmt)  # a known failure is one line (run_main)
    logging.getLogger("stages.finetune").info("finetune: %s", metrics)


def banner() -> None:
    from nep.util.console import banner as show

    cfg = load_section("finetune")
    model = cfg.base_model
    smoke = " (the tiny smoke model: proves the machinery, predicts nothing)" if cfg.is_tiny else ""
    show("finetune", f"LoRA-finetune {model}{smoke}", [paths.TRAIN])


if __name__ == "__main__":
    from nep.util.cli import run_main

    run_main(main, "finetune", banner=banner)
