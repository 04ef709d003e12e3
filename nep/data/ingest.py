"""The record index between ingest and filter: where each valid commit record lies, and its size.

Ingest reads its source once (file sources in parallel, line-aligned blocks), validates every
record, and writes `data/ingest/index.jsonl`: one row per kept record, `[file, offset, length, line,
lang, chars]`, `chars` being `len(old) + len(new)` after normalization. JSONL source files are not
copied: filter reads their records where they lie. Records ingest materializes (mined from git,
read from Parquet) go to `data/ingest/commits.jsonl`, which the index then points into. `data/ingest/sources.json` names the
files with their size and content hash (xxh3-128), so any change to a source changes ingest's
output and re-runs filter; filter reads only the rows that pass its cheap checks.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import xxhash

from nep.config.schema import Ingest
from nep.data.sources.base import checked_record, source_for
from nep.data.sources.files import read_records_file
from nep.data.sources.hub import local_path
from nep.util.batches import BLOCK_BYTES, line_blocks, ordered_map, worker_count
from nep.util.errors import NepError
from nep.util.jsonl import BOM, atomic_file, damage, file_xxh3, not_utf8, parse_line

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
    """(line number from 1, absolute offset, line without its ending) of a block read at `start`.
    A line ends at LF, CRLF or a lone CR (Python's universal newlines: a JSON line holds no raw CR,
    since JSON escapes control characters in strings). A BOM at the very start of the file is skipped."""
    pos = 3 if start == 0 and data.startswith(BOM) else 0
    lineno = 0
    if b"\r" not in data:  # the common case, at find()'s speed
        while pos < len(data):
            nl = data.find(b"\n", pos)
            end = len(data) if nl < 0 else nl
            lineno += 1
            yield lineno, start + pos, data[pos:end]
            pos = end + 1
        return
    for match in _EOL.finditer(data, pos):
        lineno += 1
        yield lineno, start + pos, data[pos : match.start()]
        pos = match.end()
    if pos < len(data):
        yield lineno + 1, start + pos, data[pos:]


_EOL = re.compile(rb"\r\n?|\n")


def index_block(path: str, start: int, end: int, languages: tuple[str, ...] | None) -> Block:
    """Validate the records of one block (a worker task); see nep.data.sources.checked_record."""

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
    """Collects index rows in order, dropping duplicates and capping languages; writes index.jsonl,
    and commits.jsonl for the records ingest materializes (mined from git, read from Parquet)."""

    def __init__(self, out_dir: Path, drops: Counter, cap_per_language: int = 0):
        self.out_dir, self.drops, self.cap = out_dir, drops, cap_per_language
        self.files: list[dict[str, Any]] = []  # the files index rows point into
        self.sources: list[dict[str, Any]] = []  # the source files read, in order
        self.per_language: Counter = Counter()
        self.seen: set[int] = set()
        self._ctx = atomic_file(out_dir / INDEX, "wb")
        self._f = self._ctx.__enter__()
        self._mined: tuple[int, Any, Any] | None = None  # (file id, context, file)
        self._mined_bytes, self._mined_lines = 0, 0
        self._mined_digest = xxhash.xxh3_128()
        self.index = {"rows": 0, "bytes": 0}  # of index.jsonl, with its xxh3 once closed
        self._index_digest = xxhash.xxh3_128()

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
        row = orjson.dumps([file, offset, length, line, lang, chars], option=orjson.OPT_APPEND_NEWLINE)
        self._f.write(row)
        self._index_digest.update(row)
        self.index["rows"] += 1
        self.index["bytes"] += len(row)
        return True

    def add_record(self, record: dict[str, Any]) -> bool:
        """Write a checked record to commits.jsonl and index it."""
        key = record_key(record)
        if key in self.seen:
            self.drops["duplicate"] += 1
            return False
        if self._mined is None:
            ctx = atomic_file(self.out_dir / MINED, "wb")
            self._mined = (self.add_file(str(self.out_dir / MINED)), ctx, ctx.__enter__())
        file, _, f = self._mined
        line = orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
        if not self.add(file, key, self._mined_lines + 1, self._mined_bytes, len(line) - 1, record["lang"],
                        len(record["old_contents"]) + len(record["new_contents"])):
            return False
        f.write(line)
        self._mined_digest.update(line)
        self._mined_bytes += len(line)
        self._mined_lines += 1
        return True

    def close(self, error: BaseException | None = None) -> None:
        exc = (None, None, None) if error is None else (type(error), error, error.__traceback__)
        if self._mined is not None:
            file, ctx, _ = self._mined
            ctx.__exit__(*exc)
            self.files[file].update(bytes=self._mined_bytes, xxh3=self._mined_digest.hexdigest())
        self._ctx.__exit__(*exc)
        self.index["xxh3"] = self._index_digest.hexdigest()


def index_files(paths: Iterable[tuple[str, str]], writer: IndexWriter, *, languages: Iterable[str] | None,
                workers: int = 1, require_records: bool = True) -> None:
    """Index JSONL files, (name recorded in sources.json, local path) each, in parallel blocks.
    A file without one valid record is an error naming it (when `require_records`)."""

    langs = tuple(languages) if languages is not None else None
    for name, local in paths:
        if not os.path.isfile(local):
            raise NepError(f"{local}: file not found")
        readable(local)
        if local.endswith(".parquet"):  # no line offsets: its records are materialized
            kept = 0  # valid records, duplicates of earlier ones included
            for obj in read_records_file(local, writer.drops):
                if (r := checked_record(obj, langs, writer.drops)) is not None:
                    kept += 1
                    writer.add_record(r)
            writer.sources.append({"path": name, "bytes": os.path.getsize(local), "xxh3": _file_hash(local)})
            if require_records and not kept:
                raise NepError(f"{local}: no valid commit record")
            continue
        file = writer.add_file(name)
        tasks = [(local, start, end, langs) for start, end in line_blocks(local)]
        line_base, kept, digests = 0, 0, []
        for block in ordered_map(_index_task, tasks, workers):
            if block.error is not None:
                lineno, offset, e = block.error
                raise not_utf8(local, line_base + lineno, offset, e)
            writer.drops.update(block.drops)
            kept += len(block.rows)  # valid records: one repeated from an earlier file is a counted duplicate
            for key, lineno, offset, length, lang, chars in block.rows:
                writer.add(file, key, line_base + lineno, offset, length, lang, chars)
            line_base += block.lines
            digests.append(block.digest)
        writer.files[file].update(bytes=os.path.getsize(local), xxh3=xxhash.xxh3_128_hexdigest(b"".join(digests)))
        writer.sources.append({"path": name, **{k: writer.files[file][k] for k in ("bytes", "xxh3")}})
        if require_records and not kept:
            raise NepError(f"{local}: no valid commit record (empty file, or every line malformed/filtered)")


def readable(path: str) -> None:
    """NepError of one line naming `path` when it cannot be opened for reading."""
    try:
        with open(path, "rb"):
            pass
    except OSError as e:
        raise NepError(f"{path}: cannot read ({e.strerror or e}): fix its permissions or remove it from the "
                         "source") from None


def _file_hash(path: str) -> str:
    digests = []
    with open(path, "rb") as f:
        while block := f.read(BLOCK_BYTES):
            digests.append(xxhash.xxh3_128_digest(block))
    return xxhash.xxh3_128_hexdigest(b"".join(digests))


def read_index(out_dir: Path) -> tuple[list[dict[str, Any]], Iterator[list[Any]]]:
    """The files of an ingest output and an iterator over its rows."""
    sources = orjson.loads((out_dir / SOURCES).read_bytes())

    def rows() -> Iterator[list[Any]]:
        with open(out_dir / INDEX, "rb") as f:
            for line in f:
                yield orjson.loads(line)

    return sources["files"], rows()


# ------------------------------------------------------------------------------- is it whole?
REPAIR = "run `dvc repro ingest`: it re-creates data/ingest/ when it is not whole"


def source_digest(path: str) -> str:
    """A JSONL file's content hash as ingest records it: xxh3-128 of its line-aligned blocks' digests."""
    digests = []
    with open(path, "rb") as f:
        for start, end in line_blocks(path):
            f.seek(start)
            digests.append(xxhash.xxh3_128_digest(f.read(end - start)))
    return xxhash.xxh3_128_hexdigest(b"".join(digests))


def _problem(local: str, expected: dict[str, Any], digest: Any, known: Stamps | None, save: bool) -> str | None:
    """Why `local` is not what ingest recorded, else None; a file whose stamp is as when it was last
    hashed to the recorded hash is not read again (with `save`, a file found whole is stamped)."""
    if known is not None and (seen := known.known(local)) and seen == {k: expected[k] for k in ("bytes", "xxh3")}:
        return None
    why = damage(local, expected, digest)
    if why is None and known is not None and save:
        known.save([(local, expected)])
    return why


def damaged(out_dir: Path, sources: dict[str, Any], known: Stamps | None = None, save: bool = True) -> str | None:
    """Why ingest's output in `out_dir` (described by its sources.json, `sources`) is not whole,
    else None: index.jsonl and every file the index points into against their recorded size and
    content hash (commits.jsonl, and the JSONL sources indexed where they lie)."""
    if "index" not in sources:
        return f"{out_dir / SOURCES}: written by an older nep, without the index's hash"
    if why := _problem(str(out_dir / INDEX), sources["index"], file_xxh3, known, save):
        return f"{out_dir / INDEX}: {why}"
    for f in sources["files"]:
        mined = f["path"] == str(out_dir / MINED)
        local = f["path"] if mined else local_path(f["path"])
        if why := _problem(local, f, file_xxh3 if mined else source_digest, known, save):
            what = "damaged since ingest wrote it" if mined else "changed since ingest indexed it"
            return f"{f['path']}: {what} ({why})"
    return None


def whole_index(out_dir: Path, stamps: Path | None = None) -> tuple[list[dict[str, Any]], Iterator[list[Any]]]:
    """`read_index`, after checking that ingest's output is whole (see `damaged`; `stamps`: ingest's
    local stamps, read only, so that files it stamped unchanged are not hashed again): a one-line
    NepError naming the file, what differs and the command that re-creates it, otherwise."""
    try:
        sources = orjson.loads((out_dir / SOURCES).read_bytes())
    except (OSError, orjson.JSONDecodeError) as e:
        raise NepError(f"{out_dir / SOURCES}: missing or unreadable ({e})", hint=REPAIR) from None
    if why := damaged(out_dir, sources, Stamps(stamps) if stamps else None, save=False):
        raise NepError(why, hint=REPAIR)
    return read_index(out_dir)


# ------------------------------------------------------------------------------- the stage's work


def _stamp(path: str) -> list[int]:
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev]


class Stamps:
    """A local cache (not a pipeline output): file path → (size, mtime, inode, device) and the
    content hash they last had, so an unchanged source file is never re-read to know it is."""

    def __init__(self, path: Path):
        self.path = path
        try:
            self.data: dict[str, Any] = orjson.loads(path.read_bytes())
        except (OSError, orjson.JSONDecodeError):
            self.data = {}

    def known(self, local: str) -> dict[str, Any] | None:
        entry = self.data.get(os.path.realpath(local))
        if entry and os.path.isfile(local) and entry["stamp"] == _stamp(local):
            return {"bytes": entry["bytes"], "xxh3": entry["xxh3"]}
        return None

    def save(self, pairs: list[tuple[str, dict[str, Any]]]) -> None:
        for local, file in pairs:
            self.data[os.path.realpath(local)] = {"stamp": _stamp(local), "bytes": file["bytes"], "xxh3": file["xxh3"]}
        with atomic_file(self.path, "wb") as f:
            f.write(orjson.dumps(self.data, option=orjson.OPT_SORT_KEYS))


def ingest(cfg: Ingest, *, out_dir: Path, stamps: Path, progress: bool = True) -> dict[str, Any]:
    """Index the records of the source `cfg.source` names (nep.data.sources; `cfg`: the `ingest:`
    params) into `out_dir` (index.jsonl, sources.json, and commits.jsonl for the records it
    materializes); return the metrics. When the source is the same as at the last run (its `state`,
    e.g. git's resolved commits; files: the same size, time and inode as when last hashed) and the
    outputs are there, nothing is read or written again."""

    source = source_for(cfg)
    manifest: dict[str, Any] = {"source": cfg.source, "languages": list(cfg.languages),
                                "params": source.params.model_dump(), **source.state()}
    known = Stamps(stamps)
    locals_ = source.files()
    if locals_:
        manifest["files"] = [{"path": name, **(known.known(local) or {})} for name, local in locals_]
    previous = _load(out_dir / SOURCES)
    if previous and previous.get("manifest") == manifest and not damaged(out_dir, previous, known):
        return previous["metrics"]  # the same source, and the outputs are whole: nothing to do

    drops: Counter = Counter()
    writer = IndexWriter(out_dir, drops, source.cap_per_language)
    try:
        for record in source.records(drops, progress):
            writer.add_record(record)
        if locals_:
            index_files(locals_, writer, languages=cfg.languages if source.filters_languages else None,
                        workers=worker_count(cfg.workers), require_records=source.require_records)
    except BaseException as e:
        writer.close(e)
        raise
    writer.close()
    if not any(f["path"] == str(out_dir / MINED) for f in writer.files):
        (out_dir / MINED).unlink(missing_ok=True)  # an earlier run's, kept by `persist`
    if locals_:
        manifest["files"] = writer.sources
        known.save([(local, f) for (_, local), f in zip(locals_, writer.sources)])
    # the outputs' own stamps, so that a run that changes nothing checks them without reading them
    known.save([(str(out_dir / INDEX), writer.index),
                *((f["path"], f) for f in writer.files if f["path"] == str(out_dir / MINED))])
    metrics = {"source": cfg.source, "records_out": sum(writer.per_language.values()),
               **{f"dropped.{k}": v for k, v in sorted(drops.items())},
               **{f"language.{k}": v for k, v in sorted(writer.per_language.items())}}
    with atomic_file(out_dir / SOURCES, "wb") as f:
        f.write(orjson.dumps({"manifest": manifest, "files": writer.files, "index": writer.index, "metrics": metrics},
                             option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS | orjson.OPT_APPEND_NEWLINE))
    return metrics


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return orjson.loads(path.read_bytes())
    except (OSError, orjson.JSONDecodeError):
        return None
