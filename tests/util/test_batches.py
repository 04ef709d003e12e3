"""nep.util.batches: results in task order whatever the workers, line-aligned blocks that cover a
file exactly, byte ranges read back."""

from __future__ import annotations

import pytest

from nep.util.batches import call, line_blocks, ordered_map, read_ranges, worker_count


def square(x: int) -> int:
    return x * x


@pytest.mark.parametrize("workers", [1, 2])
def test_ordered_map_keeps_task_order(workers):
    assert list(ordered_map(square, range(20), workers=workers, window=3)) == [x * x for x in range(20)]


def test_ordered_map_with_one_worker_is_lazy():
    seen = []

    def tasks():
        for i in range(5):
            seen.append(i)
            yield i

    results = ordered_map(square, tasks(), workers=1)
    assert next(results) == 0 and seen == [0]  # nothing read ahead in-process


def test_call_runs_a_per_task_function():
    assert list(ordered_map(call, [(square, (3,)), (max, (1, 5))])) == [9, 5]


def test_worker_count():
    assert worker_count(3) == 3
    assert worker_count(0) >= 1


@pytest.mark.parametrize("data", [
    b"a\nbb\nccc\ndddd\n",
    b"a\r\nbb\r\nccc\r\n",  # a CRLF is never cut between CR and LF
    b"a\rbb\rccc\rdddd",  # lone CRs, no final line ending
    b"no line ending at all",
    b"",
])
@pytest.mark.parametrize("block", [1, 2, 3, 7, 100])
def test_line_blocks_cover_the_file_at_line_ends(tmp_path, data, block):
    path = tmp_path / "f"
    path.write_bytes(data)
    blocks = list(line_blocks(path, block))
    assert b"".join(data[s:e] for s, e in blocks) == data
    assert all(s < e for s, e in blocks) and [s for s, _ in blocks[1:]] == [e for _, e in blocks[:-1]]
    for _, end in blocks[:-1]:
        assert data[end - 1:end] in (b"\n", b"\r") and data[end - 1:end + 1] != b"\r\n"


def test_read_ranges(tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"0123456789")
    assert read_ranges(path, [(0, 3), (5, 2), (9, 5)]) == [b"012", b"56", b"9"]
