"""Stage ingest: index the commit records (CommitPackFT schema) of the source `ingest.source` picks.

Run: `python -m stages.ingest` (reads `params.yaml: ingest:`), or `dvc repro ingest`.
Sources (nep.data.sources, one module each): `git` (mine local repositories), `jsonl` (local
JSONL/Parquet files), `hf` (bigcode/commitpackft's data files, or a local copy). Every record is validated once, in
parallel blocks; data/ingest/ gets index.jsonl (where each kept record lies, and its size),
sources.json (the source files with their content hash, the resolved git commits) and, for git,
commits.jsonl (the mined records). File sources are not copied: filter reads the records it needs
where they lie. metrics/ingest.json: records, drops by reason, records per language.

DVC runs this stage every time (`always_changed`: git repositories cannot be DVC dependencies), and
it returns at once when nothing changed: the same resolved commits (git), the same size, time and
inode as when each file was last hashed (files; `.cache/nep/ingest/stamps.json`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nep.config.params import load_section
from nep.config.schema import Ingest
from nep.data.ingest import ingest
from nep.data.sources.base import source_for
from nep.util import paths
from nep.util.errors import NepError
from nep.util.jsonl import write_metrics

OUTPUT = paths.INGEST
METRICS = paths.metrics("ingest")
STAMPS = paths.cache_root() / "ingest" / "stamps.json"  # filter reads them too ($NEP_CACHE_DIR moves them)


def run(cfg: Ingest, *, output_dir: Path = OUTPUT, metrics_path: Path = METRICS, stamps: Path = STAMPS
        ) -> dict[str, Any]:
    """Ingest from `cfg.source` (the `ingest:` params); write the index and metrics; return the metrics.
    The source first builds what it needs (git with `ingest.git.stdlib_root`: a repository of
    `ingest.git.repos` that does not exist, from the standard libraries installed there)."""
    source = source_for(cfg)
    source.prepare()
    metrics = ingest(cfg, out_dir=output_dir, stamps=stamps)
    write_metrics(metrics_path, metrics)
    if metrics["records_out"] == 0:
        drops = {k: v for k, v in metrics.items() if k.startswith("dropped.")}
        raise NepError(f"ingest ({cfg.source}) produced no record: likely {source.empty_hint}; drops: {drops}")
    return metrics


def main() -> None:
    print(run(load_section("ingest")))


def banner() -> None:
    from nep.util.console import banner as show

    cfg = load_section("ingest")
    show("ingest", f"index the commit records of {cfg.source} source", source_for(cfg).describe())


if __name__ == "__main__":
    from nep.util.cli import run_main

    run_main(main, "ingest", banner=banner)
