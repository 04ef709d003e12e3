"""Bounded, ordered parallel work over batches of records, and line-aligned blocks of files.

`ordered_map` runs `func` on each task in worker processes and yields the results in task order,
with at most `window` tasks in flight, so memory stays bounded whatever the input size. With one
worker it runs in this process (no pool), which keeps small runs and tests cheap.
"""

from __future__ import annotations

import multiprocessing
import os
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, TypeVar

from nep.util.device import usable_cores

T = TypeVar("T")
R = TypeVar("R")

BLOCK_BYTES = 4 << 20  # a worker's share of a file at a time


def worker_count(workers: int = 0) -> int:
    """`workers`, or every usable core when 0 (the data stages are CPU bound and short)."""

    return workers if workers > 0 else usable_cores()


def _context() -> multiprocessing.context.BaseContext:
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else "spawn")


def ordered_map(func: Callable[[T], R], tasks: Iterable[T], workers: int = 1, window: int = 0) -> Iterator[R]:
    """`func(task)` for every task, in order; `workers` processes, at most `window` (default
    3 × workers) tasks submitted ahead of the one being yielded."""
    if workers <= 1:
        for task in tasks:
            yield func(task)
        return
    window = window or 3 * workers
    with _context().Pool(workers) as pool:
        pending: deque = deque()
        for task in tasks:
            pending.append(pool.apply_async(func, (task,)))
            if len(pending) >= window:
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def line_blocks(path: str | Path, block_bytes: int = BLOCK_BYTES) -> Iterator[tuple[int, int]]:
    """(start, end) byte ranges covering the file, each ending just after a line ending (LF, CRLF
    or a lone CR) or at the end of the file, about `block_bytes` long: a worker reads whole lines
    from its range."""
    size = os.path.getsize(path)
    start = 0
    with open(path, "rb") as f:
        while start < size:
            end = min(start + block_bytes, size)
            if end < size:
                end = _after_line_end(f, end, size)
            yield start, end
            start = end


def _after_line_end(f: Any, pos: int, size: int) -> int:
    """The offset just after the first line ending at or after `pos` (the file's size if none);
    a CR directly followed by LF ends there as one CRLF."""
    f.seek(pos)
    while pos < size:
        chunk = f.read(1 << 16)
        if not chunk:
            break
        cut = min((i for i in (chunk.find(b"\n"), chunk.find(b"\r")) if i >= 0), default=-1)
        if cut < 0:
            pos += len(chunk)
            continue
        if chunk[cut : cut + 1] == b"\r":
            if cut + 1 < len(chunk):
                following = chunk[cut + 1 : cut + 2]
            else:  # the chunk ends at the CR: is it a CRLF?
                f.seek(pos + cut + 1)
                following = f.read(1)
            if following == b"\n":
                cut += 1
        return pos + cut + 1
    return size


def read_ranges(path: str | Path, ranges: list[tuple[int, int]]) -> list[bytes]:
    """The bytes of each (offset, length) range of a file."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return [os.pread(fd, length, offset) for offset, length in ranges]
    finally:
        os.close(fd)


def call(spec: tuple[Callable[..., Any], tuple]) -> Any:
    """Run (func, args): lets `ordered_map` carry per-task functions."""
    func, args = spec
    return func(*args)
