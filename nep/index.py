"""The record index between ingest and filter: where each valid commit record lies, and its size.

Ingest reads its source once (file sources in parallel, line-aligned blocks), validates every
record, and writes `data/ingest/index.jsonl`: one row per kept record, `[file, offset, length, line,
lang, chars]`, `chars` being `len(old) + len(new)` after normalization. The source files are not
copied: a JSONL/Parquet-free file source is read where it lies (git mining writes its records to
`data/ingest/commits.jsonl`, which the index then points into). `data/ingest/sources.json` names the
files with their size and content hash (xxh3-128), so any change to a source changes ingest's
output and re-runs filter; filter reads only the rows that pass its cheap checks.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import xxhash

from nep.batches import line_blocks, ordered_map
from nep.jsonl import BOM, InputError, atomic_file, not_utf8, parse_line

INDEX = "index.jsonl"
SOURCES = "sources.json"
MINED = "commits.jsonl"


@dataclass
class Block:
    """What a worker found in one line-aligned block of a source file."""

    rows: list[tuple[int, int, int, int, str, int]]  # (key hash, line in block, offset, length, lang, chars)
    lines: int
    digest: bytes
    drops: Counter = field(default_factory=Counter)
    error: tuple[int, int, UnicodeDecodeError] | None = None  # (line in block, line offset, error)


def record_key(record: dict[str, Any]) -> int:
    """A 64-bit hash of (repos, commit, old_file, new_file), the duplicate key."""
    key = "\0".join((record["repos"], record["commit"], record["old_file"], record["new_file"]))
    return xxhash.xxh3_64_intdigest(key.encode("utf-8", "surrogatepass"))


def split_lines(data: bytes, start: int) -> Iterator[tuple[int, int, bytes]]:
    """(line number from 1, absolute offset, line without \\n/\\r\\n) of a block read at `start`;
    a BOM at the very start of the file is skipped."""
    pos = 3 if start == 0 and data.startswith(BOM) else 0
    lineno = 0
    while pos < len(data):
        nl = data.find(b"\n", pos)
        end = len(data) if nl < 0 else nl
        lineno += 1
        line = data[pos:end]
        yield lineno, start + pos, line[:-1] if line.endswith(b"\r") else line
        pos = end + 1


def index_block(path: str, start: int, end: int, languages: tuple[str, ...] | None) -> Block:
    """Validate the records of one block (a worker task); see nep.sources.checked_record."""
    from nep.sources import checked_record

    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    block = Block(rows=[], lines=0, digest=xxhash.xxh3_128_digest(data))
    for lineno, offset, line in split_lines(data, start):
        block.lines = lineno
        if not line.strip():
            continue
        try:
            obj, reason = parse_line(line)
        except UnicodeDecodeError as e:
            block.error = (lineno, offset, e)
            return block
        if reason is None and not isinstance(obj, dict):
            reason = "not_an_object"
        if reason:
            block.drops[reason] += 1
            continue
        record = checked_record(obj, languages, block.drops)
        if record is not None:
            chars = len(record["old_contents"]) + len(record["new_contents"])
            block.rows.append((record_key(record), lineno, offset, len(line), record["lang"], chars))
    return block


def _index_task(task: tuple[str, int, int, tuple[str, ...] | None]) -> Block:
    return index_block(*task)


class IndexWriter:
    """Collects index rows in order, dropping duplicates and capping languages; writes index.jsonl."""

    def __init__(self, out_dir: Path, drops: Counter, cap_per_language: int = 0):
        self.out_dir, self.drops, self.cap = out_dir, drops, cap_per_language
        self.files: list[dict[str, Any]] = []
        self.per_language: Counter = Counter()
        self.seen: set[int] = set()
        self._ctx = atomic_file(out_dir / INDEX, "wb")
        self._f = self._ctx.__enter__()

    def add_file(self, path: str) -> int:
        self.files.append({"path": path})
        return len(self.files) - 1

    def add(self, file: int, key: int, line: int, offset: int, length: int, lang: str, chars: int) -> bool:
        if key in self.seen:
            self.drops["duplicate"] += 1
            return False
        if self.cap and self.per_language[lang] >= self.cap:
            return False
        self.seen.add(key)
        self.per_language[lang] += 1
        self._f.write(orjson.dumps([file, offset, length, line, lang, chars], option=orjson.OPT_APPEND_NEWLINE))
        return True

    def close(self, error: BaseException | None = None) -> None:
        if error is None:
            self._ctx.__exit__(None, None, None)
        else:
            self._ctx.__exit__(type(error), error, error.__traceback__)


def index_files(paths: Iterable[tuple[str, str]], writer: IndexWriter, *, languages: Iterable[str] | None,
                workers: int = 1, require_records: bool = True) -> None:
    """Index JSONL files, (name recorded in sources.json, local path) each, in parallel blocks.
    A file without one valid record is an error naming it (when `require_records`)."""
    langs = tuple(languages) if languages is not None else None
    for name, local in paths:
        if not os.path.isfile(local):
            raise InputError(f"{local}: file not found")
        file = writer.add_file(name)
        tasks = [(local, start, end, langs) for start, end in line_blocks(local)]
        line_base, kept, digests = 0, 0, []
        for block in ordered_map(_index_task, tasks, workers):
            if block.error is not None:
                lineno, offset, e = block.error
                raise not_utf8(local, line_base + lineno, offset, e)
            writer.drops.update(block.drops)
            for key, lineno, offset, length, lang, chars in block.rows:
                kept += writer.add(file, key, line_base + lineno, offset, length, lang, chars)
            line_base += block.lines
            digests.append(block.digest)
        writer.files[file].update(bytes=os.path.getsize(local), xxh3=xxhash.xxh3_128_hexdigest(b"".join(digests)))
        if require_records and not kept:
            raise InputError(f"{local}: no valid commit record (empty file, or every line malformed/filtered)")


def index_records(records: Iterable[dict[str, Any]], writer: IndexWriter, out_dir: Path) -> None:
    """Write mined records (already checked) to `out_dir`/commits.jsonl and index them."""
    file = writer.add_file(str(out_dir / MINED))
    offset = 0
    digest = xxhash.xxh3_128()
    with atomic_file(out_dir / MINED, "wb") as f:
        for lineno, record in enumerate(records, 1):
            line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
            f.write(line)
            digest.update(line)
            chars = len(record["old_contents"]) + len(record["new_contents"])
            writer.add(file, record_key(record), lineno, offset, len(line) - 1, record["lang"], chars)
            offset += len(line)
    writer.files[file].update(bytes=offset, xxh3=digest.hexdigest())


def read_index(out_dir: Path) -> tuple[list[dict[str, Any]], Iterator[list[Any]]]:
    """The files of an ingest output and an iterator over its rows."""
    sources = orjson.loads((out_dir / SOURCES).read_bytes())

    def rows() -> Iterator[list[Any]]:
        with open(out_dir / INDEX, "rb") as f:
            for line in f:
                yield orjson.loads(line)

    return sources["files"], rows()
