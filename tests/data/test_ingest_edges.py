"""Ingest's edge cases: an unreadable source file is one line naming it; records repeated across
shards are counted duplicates; files with CR-only (and mixed) line endings are read line by line."""

from __future__ import annotations

import builtins
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, unprivileged
from data.test_sources import commitpack

from nep.util.batches import line_blocks
from nep.util.errors import NepError
from nep.util.jsonl import iter_lines, read_jsonl


def ingest(tmp_path: Path, paths: list[Path], workers: int = 1) -> dict:
    from nep.config.schema import Ingest
    from stages.ingest import run

    cfg = Ingest(source="jsonl", languages=["Python"], workers=workers, jsonl={"paths": [str(p) for p in paths]})
    return run(cfg, output_dir=tmp_path / "ingest", metrics_path=tmp_path / "metrics.json",
               stamps=tmp_path / "stamps.json")


def shard(path: Path, records: list[dict], eol: str = "\n") -> Path:
    path.write_bytes("".join(json.dumps(r) + eol for r in records).encode())
    return path


def test_an_unreadable_file_is_one_line_naming_it(tmp_path, monkeypatch):
    good = shard(tmp_path / "good.jsonl", [commitpack(1)])
    locked = shard(tmp_path / "locked.jsonl", [commitpack(2)])
    real_open = builtins.open

    def guarded(file, *args, **kwargs):  # as for a file without read permission (the tests may run as root)
        if str(file) == str(locked):
            raise PermissionError(13, "Permission denied", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    with pytest.raises(NepError) as error:
        ingest(tmp_path, [good, locked])
    assert str(error.value).startswith(f"{locked}: cannot read (Permission denied)") and "\n" not in str(error.value)
    assert not (tmp_path / "ingest" / "index.jsonl").exists()


def test_the_stage_names_an_unreadable_file_without_a_traceback(tmp_path):
    locked = shard(tmp_path / "locked.jsonl", [commitpack(2)])
    locked.chmod(0)
    params = tmp_path / "params.yaml"
    params.write_text(f"ingest:\n  source: jsonl\n  jsonl: {{paths: [{locked}]}}\n")
    # as root, in a user namespace where chmod holds (root reads a file without read permission)
    done = subprocess.run([*unprivileged(), sys.executable, "-m", "stages.ingest"], cwd=tmp_path, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
    assert done.returncode == 1 and "locked.jsonl: cannot read" in done.stderr and "Traceback" not in done.stderr


def test_records_repeated_across_shards_are_counted_duplicates(tmp_path):
    records = [commitpack(i) for i in range(4)]
    first = shard(tmp_path / "part-0.jsonl", records)
    again = shard(tmp_path / "part-1.jsonl", records)  # a re-exported shard: every record valid, all seen
    mixed = shard(tmp_path / "part-2.jsonl", [records[0], commitpack(9)])
    metrics = ingest(tmp_path, [first, again, mixed])
    assert metrics["records_out"] == 5 and metrics["dropped.duplicate"] == 4 + 1


def test_a_shard_of_duplicates_in_parquet_is_counted_too(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    records = [commitpack(i) for i in range(3)]
    first = shard(tmp_path / "a.jsonl", records)
    pq.write_table(pa.Table.from_pylist(records), tmp_path / "b.parquet")
    metrics = ingest(tmp_path, [first, tmp_path / "b.parquet"])
    assert metrics["records_out"] == 3 and metrics["dropped.duplicate"] == 3


def test_a_shard_without_one_valid_record_is_still_an_error(tmp_path):
    first = shard(tmp_path / "a.jsonl", [commitpack(1)])
    bad = tmp_path / "b.jsonl"
    bad.write_text("{oops\n")
    with pytest.raises(NepError, match=r"b\.jsonl: no valid commit record"):
        ingest(tmp_path, [first, bad])


@pytest.mark.parametrize("eol", ["\r", "\r\n", "\n"])
def test_line_endings_lf_crlf_and_cr_only_read_the_same(tmp_path, eol):
    records = [commitpack(i, old_contents="a\rb\r", new_contents=f"a\r\nb{i}\r\n") for i in range(5)]
    src = shard(tmp_path / "src.jsonl", records, eol)
    metrics = ingest(tmp_path, [src])
    assert metrics["records_out"] == 5 and not any(k.startswith("dropped.") for k in metrics)
    index = [json.loads(line) for line in (tmp_path / "ingest" / "index.jsonl").read_text().splitlines()]
    assert [row[3] for row in index] == [1, 2, 3, 4, 5]  # line numbers
    data = src.read_bytes()
    for row in index:  # each row points at exactly its JSON text
        assert json.loads(data[row[1] : row[1] + row[2]])["commit"] == f"c{row[3] - 1}"
    assert [r["commit"] for r in read_jsonl(src)] == [f"c{i}" for i in range(5)]


def test_cr_only_contents_are_normalized_to_lf(tmp_path):
    from nep.core.records import validate_commit

    record = validate_commit(commitpack(1, old_contents="x = 1\ry = 2\r", new_contents="x = 1\r\ny = 3\r\n"))
    assert (record.old_contents, record.new_contents) == ("x = 1\ny = 2\n", "x = 1\ny = 3\n")


def test_blocks_end_at_any_line_ending_and_never_split_a_crlf(tmp_path):
    path = tmp_path / "mixed.jsonl"
    path.write_bytes(b'{"a": 1}\r{"b": 2}\r\n{"c": 3}\n\r{"d": 4}\r')
    expected = [(1, 0, b'{"a": 1}'), (2, 9, b'{"b": 2}'), (3, 19, b'{"c": 3}'), (5, 29, b'{"d": 4}')]
    assert list(iter_lines(path)) == expected
    from nep.data.ingest import split_lines

    data = path.read_bytes()
    for block_bytes in range(1, len(data) + 2):
        blocks = list(line_blocks(path, block_bytes))
        assert blocks[0][0] == 0 and blocks[-1][1] == len(data)
        assert all(a[1] == b[0] for a, b in zip(blocks, blocks[1:]))
        assert all(data[end - 1 : end] in (b"\n", b"\r") and data[end : end + 1] != b"\n" or end == len(data)
                   for _, end in blocks)
        pieces = [(offset, line) for start, end in blocks for _, offset, line in split_lines(data[start:end], start)]
        assert [p for p in pieces if p[1]] == [(o, line) for _, o, line in expected]
