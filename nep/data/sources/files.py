"""Local JSONL and Parquet files in the CommitPackFT schema."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nep.data.sources.base import Row, Source, checked_record
from nep.util.errors import NepError
from nep.util.jsonl import read_jsonl


def read_records_file(path: str | Path, drops: Counter) -> Iterator[dict[str, Any]]:
    """Raw objects of a JSONL or Parquet file (malformed JSON lines are counted in `drops`)."""
    path = Path(path)
    if not path.is_file():
        raise NepError(f"{path}: file not found")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.ParquetFile(path)
        except Exception as e:  # pyarrow raises several types for a corrupt file
            raise NepError(f"{path}: not a readable Parquet file ({e})") from e
        for batch in table.iter_batches():
            yield from batch.to_pylist()
        return
    try:
        yield from read_jsonl(path, drops)
    except UnicodeDecodeError as e:
        raise NepError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e


def jsonl_records(paths: list[str], *, languages: Iterable[str] | None = None, drops: Counter) -> Iterator[dict[str, Any]]:
    """Records of local JSONL/Parquet files in the CommitPackFT schema, in file then line order.
    A file without a single valid record is an error naming it."""
    if not paths:
        raise NepError("ingest.jsonl.paths is empty: list the JSONL/Parquet files to read")
    for path in paths:
        kept = 0
        for obj in read_records_file(path, drops):
            record = checked_record(obj, languages, drops)
            if record is not None:
                kept += 1
                yield record
        if not kept:
            raise NepError(f"{path}: no valid commit record (empty file, or every line malformed/filtered)")


class JsonlSource(Source):
    """`ingest.source: jsonl`: local JSONL (indexed where they lie) or Parquet files, in the
    CommitPackFT schema."""

    name = "jsonl"
    empty_hint = "files in another schema or languages outside ingest.languages"

    def describe(self) -> str:
        return ", ".join(self.params.paths) or "(no paths)"

    def files(self) -> list[tuple[str, str]]:
        if not self.params.paths:
            raise NepError("ingest.jsonl.paths is empty: list the JSONL files to read")
        return [(p, p) for p in self.params.paths]

    def check(self) -> Iterator[Row]:
        if not self.params.paths:
            yield "fail", "jsonl files", "ingest.jsonl.paths", "empty: list the JSONL/Parquet files to read"
        for path in self.params.paths:
            found = Path(path).is_file()
            yield ("pass" if found else "fail"), f"file {path}", "ingest.jsonl.paths", "found" if found else "not found"

