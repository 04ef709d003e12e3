"""What the training stages share around DVCLive: a fresh start for their output folders, and a
DVCLive logger that writes only the files the stage declares (no dvc.yaml, report, experiment or
system monitor of its own), so it works the same under `dvc repro` and `dvc exp run`."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


def clean(*directories: str | Path) -> None:
    """Remove a stage's output folders before it writes them again: nothing of an earlier run stays."""
    for directory in directories:
        shutil.rmtree(directory, ignore_errors=True)


def start(directory: str | Path) -> Any:
    """A dvclive.Live writing under `directory`: step curves in plots/metrics/<name>.tsv, and at
    `finish` the last values in metrics.json. dvclive is imported here, on first use."""
    from dvclive import Live

    return Live(dir=str(directory), save_dvc_exp=False, dvcyaml=None, report=None, monitor_system=False)


def finish(live: Any, *, summary: bool = True) -> None:
    """End `live`; without `summary`, drop the metrics.json DVCLive writes at the end (a stage whose
    metrics file is its own keeps only the curves)."""
    live.end()
    if not summary:
        (Path(live.dir) / "metrics.json").unlink(missing_ok=True)
