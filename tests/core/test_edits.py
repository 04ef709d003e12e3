"""The edit model: chunks, windows, and reverting the last chunk of every edit type."""

from __future__ import annotations

import pytest

from nep.core.edits import (
    apply_chunks,
    compute_chunks,
    current_version,
    trim_to_window,
    unified_diff,
    window_lines,
)

OLD = "".join(f"line {i}\n" for i in range(20))


def edit(old: str, changes: dict[int, list[str] | None], inserts: dict[int, list[str]] | None = None) -> str:
    """Replace/delete lines by index (None deletes) and insert lines before an index."""
    lines = old.splitlines(keepends=True)
    out = []
    for i, line in enumerate(lines):
        out.extend((inserts or {}).get(i, []))
        if i in changes:
            out.extend(changes[i] or [])
        else:
            out.append(line)
    return "".join(out)


@pytest.mark.parametrize(
    ("new", "last_type"),
    [
        (edit(OLD, {}, {2: ["a\n"], 10: ["b\n", "c\n"]}), "add"),
        (edit(OLD, {11: None, 12: None}, {2: ["a\n"]}), "delete"),
        (edit(OLD, {15: ["fifteen\n"]}, {2: ["a\n"]}), "replace"),
    ],
)
def test_current_version_reverts_only_the_last_chunk_of_each_type(new, last_type):
    chunks = compute_chunks(OLD, new)
    assert [c.type for c in chunks] == ["add", last_type]
    current = current_version(OLD, new)
    # current = old with only the first chunk applied
    assert current == apply_chunks(OLD, chunks[:1])
    assert compute_chunks(OLD, current) == chunks[:1]
    # and current → new is exactly the last chunk
    rest = compute_chunks(current, new)
    assert len(rest) == 1 and rest[0].type == last_type
    assert rest[0].old_lines == chunks[-1].old_lines and rest[0].new_lines == chunks[-1].new_lines


def test_current_version_needs_a_chunk():
    with pytest.raises(ValueError):
        current_version(OLD, OLD)


def test_window_and_changed_lines():
    new = edit(OLD, {9: ["nine\n"]}, {1: ["x\n", "y\n"]})
    chunks = compute_chunks(OLD, new)
    assert [c.changed_lines for c in chunks] == [2, 2]
    assert window_lines(chunks) == (9 - 1 + 1, 11 - 1 + 1)
    assert window_lines([]) == (0, 0)


def test_unified_diff_marks_missing_final_newline():
    diff = unified_diff("a\nb", "a\nc", old_name="f", new_name="f")
    assert "\\ No newline at end of file" in diff


def test_trim_to_window_keeps_the_same_edits():
    old = "".join(f"line {i}\n" for i in range(100))
    new = old.replace("line 40\n", "line 40\nadded\n").replace("line 60\n", "changed 60\n")
    cut_old, cut_new = trim_to_window(old, new, 5)
    assert cut_old.splitlines()[0] == "line 36" and cut_old.splitlines()[-1] == "line 65"
    before, after = compute_chunks(old, new), compute_chunks(cut_old, cut_new)
    assert [(c.old_lines, c.new_lines) for c in before] == [(c.old_lines, c.new_lines) for c in after]
    assert trim_to_window(old, new, 0) == (old, new)
    assert trim_to_window(old, new, 500) == (old, new)
    assert trim_to_window(old, old, 5) == (old, old)
