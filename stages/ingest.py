"""Stage ingest: index the commit records (CommitPackFT schema) of the source `ingest.source` picks.

Run: `python -m stages.ingest` (reads `params.yaml: ingest:`), or `dvc repro ingest`.
Sources: `git` (mine local repositories, nep.data.sources.git_records), `jsonl` (local JSONL files),
`hf` (bigcode/commitpackft's data files, or a local copy). Every record is validated once, in
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
from nep.data.stdlib_history import ensure_history, resolve_root
from nep.util import paths
from nep.util.errors import NepError
from nep.util.jsonl import write_metrics

OUTPUT = paths.INGEST
METRICS = paths.metrics("ingest")
STAMPS = paths.CACHE / "ingest" / "stamps.json"


def run(cfg: Ingest, *, output_dir: Path = OUTPUT, metrics_path: Path = METRICS, stamps: Path = STAMPS
        ) -> dict[str, Any]:
    """Ingest from `cfg.source` (the `ingest:` params); write the index and metrics; return the metrics.
    With `ingest.git.stdlib_root`, a repository of `ingest.git.repos` that does not exist is first
    built from the standard libraries installed there (nep.data.stdlib_history)."""
    source = cfg.source
    if source == "git" and cfg.git.stdlib_root:
        for repo in cfg.git.repos:
            ensure_history(Path(repo), resolve_root(cfg.git.stdlib_root))
    metrics = ingest(cfg, out_dir=output_dir, stamps=stamps)
    write_metrics(metrics_path, metrics)
    if metrics["records_out"] == 0:
        hint = {
            "git": "a shallow clone (git fetch --unshallow), a rev range without modified source files, "
            "or ingest.languages not matching the repository",
            "jsonl": "files in another schema or languages outside ingest.languages",
            "hf": "language configs that do not exist, or max_records_per_language",
        }[source]
        drops = {k: v for k, v in metrics.items() if k.startswith("dropped.")}
        raise NepError(f"ingest ({source}) produced no record: likely {hint}; drops: {drops}")
    return metrics


def main() -> None:
    print(run(load_section("ingest")))


def banner() -> None:
    from nep.data.sources.git import revisions
    from nep.util.console import banner as show

    p = load_section("ingest").model_dump()
    if p["source"] == "git":
        g = p["git"]
        what = ", ".join(f"{r}@{rev[:12]}" for r, (rev, _) in zip(g["repos"], revisions(g["repos"], g["rev"], g["pins"])))
    elif p["source"] == "jsonl":
        what = ", ".join(p["jsonl"]["paths"]) or "(no paths)"
    else:
        what = f"{p['hf']['dataset']}@{p['hf']['revision'][:12]}, {len(p['languages'])} languages"
    show("ingest", f"index the commit records of {p['source']} source", what)


if __name__ == "__main__":
    from nep.util.cli import run_main

    run_main(main, "ingest", banner=banner)
