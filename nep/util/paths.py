"""The one place that names the pipeline's files (dvc.yaml repeats them for DVC).

Every stage writes `data/<stage>/...` (or `models/<stage>/`) and `metrics/<stage>.json`. Measured
times never go there: they go under `metrics/timing/`, which no stage declares as an output, so
re-running a stage on the same inputs gives the same bytes in `dvc.lock` and `metrics/`.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from nep.util.errors import NepError

DATA = Path("data")
MODELS = Path("models")
METRICS = Path("metrics")
TIMING = METRICS / "timing"
CACHE = Path(".cache/nep")

INGEST = DATA / "ingest"  # a directory: index.jsonl, sources.json (+ git's commits.jsonl), see nep/data/ingest.py
FILTER = DATA / "filter/commits.jsonl"
LABEL = DATA / "label/commits.jsonl"
PROCESS = DATA / "process/examples.jsonl"
TRAIN = DATA / "split/train.jsonl"
TEST = DATA / "split/test.jsonl"
RETRY = DATA / "retry"  # <predictor>.json: its tolerated failures, asked again by `dvc repro` (nep.predictors.retry)
FINETUNE = MODELS / "finetune"
FINETUNE_CURVES = METRICS / "finetune/plots/metrics"   # DVCLive's step curves, <name>.tsv
POSTTRAIN = MODELS / "posttrain"                       # the post-trained adapter (posttrain stage)
POSTTRAIN_DATA = DATA / "posttrain"                    # candidates.jsonl, pairs.jsonl
POSTTRAIN_CURVES = METRICS / "posttrain/plots/metrics" # DVCLive's step curves (reward, kl, loss...)
REPORT = METRICS / "report"                            # the report stage's README.md, CSVs, SVGs
EXAMPLES_PAGE = METRICS / "evaluate/examples.html"     # evaluate's per-example page (nep/evaluate/examples_page.py)
PLOT_TEMPLATES = Path(".dvc/plots")                    # nep's Vega-Lite templates and plots page


def project_root(start: Path | None = None) -> Path | None:
    """The nearest directory at or above `start` (the working directory) holding both dvc.yaml and
    params.yaml: nep's project root, where every command runs. None when there is none."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        if (directory / "dvc.yaml").is_file() and (directory / "params.yaml").is_file():
            return directory
    return None


def enter_project_root() -> Path:
    """Make the project root the working directory (a command started in a subdirectory finds its
    params.yaml and data/ as DVC would); a NepError saying where to run when there is none."""

    if Path("params.yaml").is_file():  # a project (or a test's stand-in) right here
        return Path.cwd()
    root = project_root()
    if root is None:
        raise NepError(f"{Path.cwd()} is not inside a nep project (no dvc.yaml and params.yaml here or above)",
                       hint="run from the project root, the directory with dvc.yaml")
    if root != Path.cwd().resolve():
        os.chdir(root)
    return root


def cache_root() -> Path:
    """nep's cache directory, outside every DVC output: $NEP_CACHE_DIR, else .cache/nep."""
    return Path(os.environ.get("NEP_CACHE_DIR") or CACHE)


# OSError numbers that say a place cannot be written (read-only, no permission, full, a file where a
# directory is expected): an environment problem, reported in one line (`unwritable`), not a bug.
UNWRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC, errno.EDQUOT, errno.ENOTDIR,
                        errno.EEXIST, errno.EISDIR})


def _under(path: Path, root: Path) -> bool:
    try:
        return path.resolve().is_relative_to(root.resolve())
    except OSError:
        return False


class Unwritable(NepError, OSError):
    """A place that cannot be written: a NepError (one line), and still an OSError for code that
    tolerates one (a cache it can do without)."""


def unwritable(e: OSError, path: str | Path | None = None) -> Unwritable | None:
    """The one-line error for an OSError that says `path` (else the error's file) cannot be written,
    naming what decides that place: `NEP_CACHE_DIR` for nep's cache, the project's output folders
    for data/, models/ and metrics/. None for any other error (a bug keeps its traceback)."""
    where = path if path is not None else e.filename
    if e.errno not in UNWRITABLE or where is None:
        return None
    where = Path(os.fsdecode(where))
    what = e.strerror or str(e)
    if e.errno in (errno.ENOTDIR, errno.EEXIST):
        what += " (a file stands where a directory is expected)"
    cache = cache_root()
    if _under(where, cache):
        env = os.environ.get("NEP_CACHE_DIR")
        hint = (f"NEP_CACHE_DIR={env} is nep's cache (checkpoints, LLM answers), which must be writable: point "
                "NEP_CACHE_DIR at a writable directory" if env else
                f"nep's cache (checkpoints, LLM answers) is {CACHE} in the project: make it writable, or set "
                "NEP_CACHE_DIR to a writable directory")
    elif any(_under(where, top) for top in (DATA, MODELS, METRICS)):
        hint = f"stages write their outputs under {DATA}/, {MODELS}/ and {METRICS}/ of the project: make them writable"
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            hint = "free some space on that disk and run again: what was written so far is kept"
    else:
        hint = None
    error = Unwritable(f"{where}: cannot write ({what})", hint=hint)
    error.errno = e.errno
    return error


def metrics(stage: str, name: str | None = None) -> Path:
    """metrics/<stage>.json, or metrics/<stage>/<name>.json for foreach stages (one per predictor)."""
    return METRICS / f"{stage}.json" if name is None else METRICS / stage / f"{name}.json"


def timing(stage: str, name: str | None = None) -> Path:
    """Where a stage reports measured times: metrics/timing/<stage>[/<name>].json (not a DVC output)."""
    return TIMING / f"{stage}.json" if name is None else TIMING / stage / f"{name}.json"


def generations(predictor: str) -> Path:
    return DATA / "generate" / f"{predictor}.jsonl"


def retry(predictor: str) -> Path:
    return RETRY / f"{predictor}.json"


def judgments(predictor: str) -> Path:
    return DATA / "judge" / f"{predictor}.jsonl"
