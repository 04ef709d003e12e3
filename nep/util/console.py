"""What a stage prints while it runs: one banner line (what it does, how big its input is), log
lines and warnings each on a line of their own (never glued to a progress bar) and each distinct
warning once, and library warnings that nep expects, silenced around the one call that raises them.

Everything goes to stderr, so a stage's stdout stays its one-line summary.
"""

from __future__ import annotations

import logging
import re
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROWS_SCAN_LIMIT = 1 << 30  # count the lines of JSONL inputs up to this size; larger ones show bytes only


def size_text(n: int) -> str:
    """Bytes for people: 980 B, 12.3 kB, 4.1 MB, 2.0 GB."""
    value = float(n)
    for unit in ("B", "kB", "MB", "GB"):
        if value < 1000 or unit == "GB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1000
    raise AssertionError  # unreachable


def _lines(path: Path) -> int:
    count = 0
    with path.open("rb") as f:
        while chunk := f.read(1 << 20):
            count += chunk.count(b"\n")
    return count


def describe(path: str | Path) -> str:
    """`path (N rows, size)` for a JSONL file, `path (N files, size)` for a directory,
    `path (missing)` when it is not there."""
    path = Path(path)
    if path.is_file():
        size = path.stat().st_size
        if path.suffix == ".jsonl" and size <= ROWS_SCAN_LIMIT:
            return f"{path} ({_lines(path):,} rows, {size_text(size)})"
        return f"{path} ({size_text(size)})"
    if path.is_dir():
        files = [f for f in path.rglob("*") if f.is_file()]
        return f"{path} ({len(files):,} files, {size_text(sum(f.stat().st_size for f in files))})"
    return f"{path} (missing)"


def banner(stage: str, does: str, inputs: list[str | Path] | str = ()) -> str:
    """Print (to stderr) and return the stage's one banner line: `== stage: does <- inputs`.
    `inputs` are paths (described by `describe`) or one ready-made text."""
    shown = inputs if isinstance(inputs, str) else ", ".join(describe(p) for p in inputs)
    line = f"== {stage}: {does}" + (f" <- {shown}" if shown else "")
    print(line, file=sys.stderr, flush=True)
    return line


LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def bars(progress: bool = True) -> bool | None:
    """tqdm's `disable` for nep's progress bars: None draws them only when stderr is a terminal (a
    log file or a pipe gets no `\\r`-redrawn lines to glue a summary onto), True never."""
    return None if progress else True


class _BarSafeHandler(logging.StreamHandler):
    """Writes each record through `tqdm.write`, which lifts any progress bar being drawn, writes the
    line and draws the bar again below it: a log line never lands on a bar's line."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            from tqdm import tqdm

            tqdm.write(self.format(record), file=self.stream or sys.stderr)
        except Exception:  # noqa: BLE001 - logging must never raise
            self.handleError(record)


class _Once(logging.Filter):
    """Lets each distinct warning (level WARNING and above: logger and message) through once."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING:
            return True
        key = (record.name, record.getMessage())
        if key in self.seen:
            return False
        self.seen.add(key)
        return True


def setup_logging(level: int = logging.INFO) -> None:
    """A stage's logging: `LEVEL name: message` on stderr, each line its own even while a progress
    bar is drawn, each distinct warning once; Python warnings (`warnings.warn`) go the same way."""
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _BarSafeHandler)]:
        root.removeHandler(old)
    handler = _BarSafeHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    handler.addFilter(_Once())
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)


@contextmanager
def expected_warnings(*patterns: tuple[type[Warning], str]) -> Iterator[None]:
    """Silence the library warnings nep expects (category, message regex), only inside the block;
    every other warning still shows."""
    with warnings.catch_warnings():
        for category, message in patterns:
            warnings.filterwarnings("ignore", message=message, category=category)
        yield


class _Drop(logging.Filter):
    def __init__(self, pattern: str):
        super().__init__()
        self.pattern = re.compile(pattern)

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


@contextmanager
def expected_log(logger: str, pattern: str) -> Iterator[None]:
    """Drop the log records of `logger` whose message matches `pattern`, only inside the block
    (for a library that logs, rather than warns, about something nep expects and counts)."""
    target, drop = logging.getLogger(logger), _Drop(pattern)
    target.addFilter(drop)
    try:
        yield
    finally:
        target.removeFilter(drop)


@contextmanager
def quiet_dataset_bars() -> Iterator[None]:
    """No `datasets` progress bars inside the block (trl's five dataset-preparation passes over a
    handful of examples: "Adding EOS", "Tokenizing"...); as they were afterwards."""
    import datasets

    was_disabled = datasets.are_progress_bars_disabled()
    datasets.disable_progress_bars()
    try:
        yield
    finally:
        if not was_disabled:
            datasets.enable_progress_bars()
