"""finetune: LoRA supervised fine-tuning of `finetune.base_model` on data/split/train.jsonl.

    python -m stages.finetune                          # one CPU or GPU (or via dvc repro)
    accelerate launch -m stages.finetune               # several GPUs (backend hf)

Writes the adapter, tokenizer and nep_finetune.json to models/finetune/ (plus base/ for the
tiny-random smoke model and merged/ with `merge: true`), and DVCLive training curves and final
values to metrics/finetune/ (metrics.json, plots/metrics/).
"""

from __future__ import annotations

import logging
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

from nep.jsonl import InputError, read_jsonl
from nep.params import load_params
from nep.training import FinetuneConfig, run_finetune

TRAIN_PATH = "data/split/train.jsonl"
OUT_DIR = "models/finetune"
METRICS_DIR = "metrics/finetune"


def finetune(
    *,
    train_path: str | Path = TRAIN_PATH,
    out_dir: str | Path = OUT_DIR,
    metrics_dir: str | Path = METRICS_DIR,
    progress: bool = True,
    **params: Any,
) -> dict[str, Any]:
    """Train on the processed examples in `train_path`; save the model to `out_dir` and the
    DVCLive metrics (metrics.json) and step curves (plots/metrics/) to `metrics_dir`."""
    from dvclive import Live

    cfg = FinetuneConfig.from_params(params)
    drops: Counter = Counter()
    records = list(read_jsonl(train_path, drops))
    if not records:
        raise InputError(f"{train_path}: no training examples")
    out_dir, metrics_dir = Path(out_dir), Path(metrics_dir)
    shutil.rmtree(out_dir, ignore_errors=True)
    shutil.rmtree(metrics_dir, ignore_errors=True)
    # save_dvc_exp=False and no dvc.yaml of its own: DVCLive only writes files, which the
    # finetune stage declares, so it works the same under `dvc repro` and `dvc exp run`.
    with Live(dir=str(metrics_dir), save_dvc_exp=False, dvcyaml=None, report=None, monitor_system=False) as live:
        metrics = run_finetune(records, out_dir, cfg, live=live, progress=progress)
        metrics.update({f"dropped.{k}": v for k, v in sorted(drops.items())})
        metrics["examples"] += sum(drops.values())
        metrics["examples_dropped"] += sum(drops.values())
        for name, value in metrics.items():
            live.summary[name] = value
    return metrics


def main() -> None:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    metrics = finetune(**load_params("finetune"))
    logging.getLogger("stages.finetune").info("finetune: %s", metrics)


if __name__ == "__main__":
    main()
