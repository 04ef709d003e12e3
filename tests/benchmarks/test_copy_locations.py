"""benchmarks/copy_locations.py: which copies are no-op blocks, and whether they sit on the edit."""

from __future__ import annotations

from benchmarks.copy_locations import analyse, edit_lines

CURRENT = "a = 1\nb = 2\nc = 3\nd = 4\ne = 5\nf = 6\ng = 7\nh = 8\n"


def noop(line: str) -> str:
    return f"<<<<<<< ORIGINAL\n{line}\n=======\n{line}\n>>>>>>> UPDATED\n"


def test_edit_lines_marks_replacements_and_the_lines_around_an_insertion():
    assert edit_lines(CURRENT, CURRENT.replace("c = 3", "c = 30")) == {2}
    assert edit_lines(CURRENT, CURRENT.replace("d = 4\n", "d = 4\nx = 0\n")) == {3, 4}


def test_copies_are_counted_by_where_their_no_op_block_sits():
    nxt = CURRENT.replace("c = 3", "c = 30")
    tests = {str(i): {"current": CURRENT, "next": nxt} for i in range(4)}
    records = [
        {"id": "0", "raw_output": noop("c = 3"), "output": CURRENT, "extracted": True},  # on the edit
        {"id": "1", "raw_output": noop("e = 5"), "output": CURRENT, "extracted": True},  # 2 lines off
        {"id": "2", "raw_output": noop("h = 8"), "output": CURRENT, "extracted": True},  # far
        {"id": "3", "raw_output": "<<<<<<< ORIGINAL\nc = 3\n=======\nc = 30\n>>>>>>> UPDATED\n", "output": nxt,
         "extracted": True},  # not a copy
    ]
    out = analyse(tests, records)
    assert (out["answers"], out["copies"], out["noop_blocks"], out["located"]) == (4, 3, 3, 3)
    assert (out["on_edit"], out["within_3_lines"]) == (1, 2)
    # one line of 9 (the final empty line included) is the edit: each one-line block hits it 1 time in 9
    assert out["on_edit_by_chance"] == round(3 / 9, 1)
    assert 0 < out["within_3_lines_by_chance"] <= 3
