"""nep.util.jsonl: every bad line counted with its reason (or named by file and line), line endings
of every kind, a BOM skipped, and files that appear whole or not at all."""

from __future__ import annotations

from collections import Counter

import pytest

from nep.util.errors import NepError
from nep.util.jsonl import (
    MAX_DEPTH,
    atomic_file,
    flat_counts,
    iter_lines,
    parse_line,
    read_jsonl,
    write_jsonl,
    write_lines,
    write_metrics,
)


@pytest.mark.parametrize(("line", "value", "reason"), [
    (b'{"a": 1}', {"a": 1}, None),
    (b"[1, 2]", [1, 2], None),
    (b'{"a": NaN}', None, None),  # json reads what orjson refuses (value checked below)
    (b'{"a": 1', None, "malformed_json"),
    (b'{"a": "\\ud800"}', None, "lone_surrogate"),
    (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), None, "too_deeply_nested"),
    (b"1" + b"0" * 5000, None, "number_too_large"),
])
def test_parse_line_gives_the_value_or_the_reason(line, value, reason):
    got, why = parse_line(line)
    assert why == reason
    if value is not None:
        assert got == value
    if line.startswith(b'{"a": NaN'):
        assert got["a"] != got["a"]  # NaN, through json


def test_parse_line_raises_on_bytes_that_are_not_utf8():
    with pytest.raises(UnicodeDecodeError):
        parse_line(b'{"a": "\xff"}')


def test_iter_lines_numbers_and_offsets_with_every_line_ending(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'\xef\xbb\xbf{"a": 1}\r\n\n{"b": 2}\r{"c": 3}\n  \n{"d": 4}')
    lines = list(iter_lines(path))
    assert [(n, line) for n, _, line in lines] == [(1, b'{"a": 1}'), (3, b'{"b": 2}'), (4, b'{"c": 3}'), (6, b'{"d": 4}')]
    data = path.read_bytes()
    for _, offset, line in lines:  # each offset points at its line in the file
        assert data[offset:offset + len(line)] == line


def test_iter_lines_reads_a_byte_range(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b"1\n22\n333\n")
    assert [line for _, _, line in iter_lines(path, 2, 5)] == [b"22"]


def test_read_jsonl_counts_bad_lines_or_names_the_first(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"a": 1}\n[1]\n{"a": \n{"a": 2}\n')
    drops: Counter = Counter()
    assert list(read_jsonl(path, drops)) == [{"a": 1}, {"a": 2}]
    assert drops == {"not_an_object": 1, "malformed_json": 1}
    with pytest.raises(NepError, match=r"x\.jsonl:2: expected a JSON object"):
        list(read_jsonl(path))
    with pytest.raises(NepError, match="file not found"):
        list(read_jsonl(tmp_path / "missing.jsonl"))


def test_read_jsonl_names_file_line_and_byte_of_invalid_utf8(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_bytes(b'{"a": 1}\n{"a": "\xff"}\n')
    with pytest.raises(NepError, match=r"x\.jsonl:2: not UTF-8 text .*byte 0xff at file offset 16"):
        list(read_jsonl(path, Counter()))


def test_writes_round_trip_and_metrics_are_sorted(tmp_path):
    records = [{"b": "é", "a": 1}, {"a": [1, 2]}]
    assert write_jsonl(tmp_path / "r.jsonl", records) == 2
    assert list(read_jsonl(tmp_path / "r.jsonl")) == records
    assert (tmp_path / "r.jsonl").read_text(encoding="utf-8").splitlines()[0] == '{"b": "é", "a": 1}'
    assert write_lines(tmp_path / "l.jsonl", [b'{"x": 1}\n', b'{"x": 2}\n']) == 2
    write_metrics(tmp_path / "m.json", {"b": 1, "a": 2})
    assert (tmp_path / "m.json").read_text() == '{\n  "a": 2,\n  "b": 1\n}\n'


def test_atomic_file_leaves_the_old_file_and_no_temporary_on_failure(tmp_path):
    path = tmp_path / "out.jsonl"
    path.write_text("old\n")
    with pytest.raises(RuntimeError), atomic_file(path) as f:
        f.write("new, half written")
        raise RuntimeError("killed")
    assert path.read_text() == "old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]
    with atomic_file(tmp_path / "sub/new.txt") as f:  # parents are made
        f.write("done\n")
    assert (tmp_path / "sub/new.txt").read_text() == "done\n"


def test_flat_counts_prefixes_and_sorts():
    assert flat_counts("dropped", Counter({"b": 2, "a": 1})) == {"dropped.a": 1, "dropped.b": 2}
    assert list(flat_counts("x", {"z": 1, "y": 1})) == ["x.y", "x.z"]
