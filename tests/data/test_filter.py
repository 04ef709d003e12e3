"""Each filter at its boundaries, the check order, and the filter stage's metrics."""

from __future__ import annotations

import difflib
import json
import re
from collections import Counter

import pytest

import nep.data.filter as filters
from nep.core.edits import compute_chunks, diff_chunks, diff_hunks, hunk_window, window_lines
from nep.data.filter import filter_records, paper_filter, structural_reason
from nep.data.tokens import count_tokens

BASE = [f"value_{i} = {i}\n" for i in range(200)]


def with_inserts(inserts: dict[int, int], base: list[str] = BASE) -> tuple[str, str]:
    """(old, new) where `inserts[i]` new lines go before base line i."""
    new: list[str] = []
    for i, line in enumerate(base):
        new.extend(f"added_{i}_{j} = {j}\n" for j in range(inserts.get(i, 0)))
        new.append(line)
    return "".join(base), "".join(new)


def record(old: str, new: str, lang: str = "Python", **extra) -> dict:
    return {"old_contents": old, "new_contents": new, "lang": lang, "commit": "c", "new_file": "f.py", **extra}


DEFAULT = paper_filter(max_chars=0, max_tokens=0)  # structure checks only


def test_chunk_lines_boundary_5_passes_6_fails():
    assert structural_reason(*with_inserts({10: 1, 20: 5}), DEFAULT) is None
    assert structural_reason(*with_inserts({10: 1, 20: 6}), DEFAULT) == "chunk_too_long"
    # a replacement shows its removed and added lines: 3 - and 3 + is 6 lines
    old = "".join(BASE)
    new_lines = list(BASE)
    new_lines[30:33] = ["x = 1\n", "y = 2\n", "z = 3\n"]
    new_lines.insert(10, "w = 0\n")
    config = paper_filter(max_chars=0, max_tokens=0, edit_types=("add", "replace"))
    assert structural_reason(old, "".join(new_lines), config) == "chunk_too_long"


def hunk_headers(old: str, new: str) -> list[tuple[int, ...]]:
    """The (a, b, c, d) of difflib's `@@ -a,b +c,d @@` headers, as the paper's script reads them."""
    diff = difflib.unified_diff(old.splitlines(), new.splitlines(), lineterm="")
    return [tuple(map(int, m)) for m in re.findall(r"@@ -(\d+),(\d+) \+(\d+),(\d+) @@", "\n".join(diff))]


def test_window_boundary_80_passes_81_fails():
    # the window runs over the diff's hunks, their 3 context lines included, as in the paper
    old, new = with_inserts({10: 1, 82: 1})
    (a1, _, c1, _), (a2, b2, c2, d2) = hunk_headers(old, new)
    assert (a2 + b2 - a1, c2 + d2 - c1) == (78, 80)
    assert hunk_window(diff_hunks(diff_chunks(old, new), 200, 202)) == (78, 80)
    assert structural_reason(old, new, DEFAULT) is None
    old, new = with_inserts({10: 1, 83: 1})
    assert hunk_window(diff_hunks(diff_chunks(old, new), 200, 202)) == (79, 81)
    assert structural_reason(old, new, DEFAULT) == "window_too_long"


def test_a_limit_of_0_disables_the_chunk_and_window_checks():
    long_chunk = with_inserts({10: 1, 20: 9})
    wide = with_inserts({10: 1, 150: 1})
    assert structural_reason(*long_chunk, DEFAULT) == "chunk_too_long"
    assert structural_reason(*wide, DEFAULT) == "window_too_long"
    config = paper_filter(max_chars=0, max_tokens=0, max_chunk_lines=0, max_window_lines=0)  # the schema accepts 0
    assert structural_reason(*long_chunk, config) is None
    assert structural_reason(*wide, config) is None
    # the other checks still run
    assert structural_reason(*with_inserts({10: 1}), config) == "too_few_chunks"


def test_window_between_changed_lines_is_not_the_papers():
    # 80 lines from the first to the last changed line: 86 with the hunks' context, dropped
    old, new = with_inserts({10: 1, 88: 1})
    assert max(window_lines(compute_chunks(old, new))) == 80
    assert structural_reason(old, new, DEFAULT) == "window_too_long"
    # the context stops at the file's ends: an edit on line 0 has none before it
    old, new = with_inserts({0: 1, 75: 1})
    (a1, _, c1, _), (a2, b2, c2, d2) = hunk_headers(old, new)
    assert (a1, c1) == (1, 1) and (a2 + b2 - a1, c2 + d2 - c1) == (78, 80)
    assert hunk_window(diff_hunks(diff_chunks(old, new), 200, 202)) == (78, 80)
    assert structural_reason(old, new, DEFAULT) is None
    # fewer context lines (a param) narrow the window
    old, new = with_inserts({10: 1, 85: 1})
    assert structural_reason(old, new, DEFAULT) == "window_too_long"
    assert structural_reason(old, new, paper_filter(max_chars=0, max_tokens=0, hunk_context_lines=1)) is None


def test_a_final_newline_change_is_not_a_chunk():
    old, new = with_inserts({10: 1, 20: 1})
    every = paper_filter(max_chars=0, max_tokens=0, edit_types=("add", "delete", "replace"))
    # two insertions plus a final newline removed: two add chunks for the paper, kept add-only
    assert [c.type for c in compute_chunks(old, new[:-1])] == ["add", "add", "replace"]
    assert [c.type for c in diff_chunks(old, new[:-1])] == ["add", "add"]
    assert structural_reason(old, new[:-1], DEFAULT) is None
    # one insertion plus the final newline: one chunk, too few under every edit type setting
    one = with_inserts({10: 1})[1]
    assert len(compute_chunks(old, one[:-1])) == 2
    assert structural_reason(old, one[:-1], every) == "too_few_chunks"
    # only the final newline: no change at all
    assert structural_reason(old, old[:-1], every) == "no_change"


def test_a_one_line_hunk_range_has_no_count_and_no_window():
    # difflib writes `@@ -1 +1,3 @@` for a one-line file: the paper's pattern finds no header, drops it
    old, new = "b\n", "a\nb\nc\n"
    assert hunk_headers(old, new) == []
    assert [c.type for c in diff_chunks(old, new)] == ["add", "add"]
    assert structural_reason(old, new, DEFAULT) == "window_too_long"
    assert structural_reason("b\nd\n", "a\nb\nd\nc\n", DEFAULT) is None


def test_special_token_text_is_dropped_like_the_papers_encode():
    old, new = with_inserts({10: 1, 20: 1}, ["<|endoftext|>\n", *BASE])
    result = filter_records([record(old, new)], paper_filter(max_chars=0))
    assert not result.kept and result.dropped == {"special_token": 1}
    assert len(filter_records([record(old, new)], paper_filter(max_chars=0, max_tokens=0)).kept) == 1


def test_one_chunk_is_too_few():
    assert structural_reason(*with_inserts({10: 2}), DEFAULT) == "too_few_chunks"
    assert structural_reason(*with_inserts({10: 2}), paper_filter(max_chars=0, max_tokens=0, min_chunks=1)) is None


def test_no_change():
    old = "".join(BASE)
    assert structural_reason(old, old, DEFAULT) == "no_change"


def test_delete_only_and_replace_need_their_edit_types():
    old = "".join(BASE)
    deleted = "".join(BASE[:10] + BASE[12:40] + BASE[41:])
    replaced = "".join(BASE[:10] + ["ten = 10\n"] + BASE[11:40] + ["forty = 40\n"] + BASE[41:])
    assert [c.type for c in compute_chunks(old, deleted)] == ["delete", "delete"]
    assert [c.type for c in compute_chunks(old, replaced)] == ["replace", "replace"]
    assert structural_reason(old, deleted, DEFAULT) == "edit_type"
    assert structural_reason(old, replaced, DEFAULT) == "edit_type"
    every = paper_filter(max_chars=0, max_tokens=0, edit_types=("add", "delete", "replace"))
    assert structural_reason(old, deleted, every) is None
    assert structural_reason(old, replaced, every) is None
    # one disallowed chunk among allowed ones is enough to drop
    mixed = "".join(BASE[:10] + ["new = 1\n"] + BASE[10:40] + BASE[41:])
    assert structural_reason(old, mixed, DEFAULT) == "edit_type"
    assert structural_reason(old, mixed, paper_filter(max_chars=0, max_tokens=0, edit_types=("add", "delete"))) is None


def test_unknown_edit_type_is_rejected():
    with pytest.raises(ValueError, match="edit_types"):
        paper_filter(edit_types=("move",))


def test_char_boundary():
    old, new = with_inserts({10: 1, 20: 1})
    n = len(old) + len(new)
    assert structural_reason(old, new, paper_filter(max_chars=n, max_tokens=0)) is None
    assert structural_reason(old, new, paper_filter(max_chars=n - 1, max_tokens=0)) == "too_many_chars"


def test_token_boundary():
    old, new = with_inserts({10: 1, 20: 1})
    tokens = count_tokens(old + new)
    assert 2 * len((old + new).encode()) > 2 * tokens  # so the byte shortcut does not decide
    kept = filter_records([record(old, new)], paper_filter(max_chars=0, max_tokens=2 * tokens))
    assert len(kept.kept) == 1
    dropped = filter_records([record(old, new)], paper_filter(max_chars=0, max_tokens=2 * tokens - 1))
    assert not dropped.kept and dropped.dropped == {"too_many_tokens": 1}


def test_only_survivors_of_cheap_checks_are_tokenized(monkeypatch):
    seen: list[str] = []
    real = filters.count_tokens_batch

    def spy(texts, encoding, threads=2):
        seen.extend(texts)
        return real(texts, encoding)

    monkeypatch.setattr(filters, "count_tokens_batch", spy)
    good = record(*with_inserts({10: 1, 20: 1}))
    long = record(*with_inserts({10: 1, 20: 1}, BASE * 20))
    one_chunk = record(*with_inserts({10: 1}))
    result = filter_records([good, long, one_chunk], paper_filter(max_chars=32768, max_tokens=64))
    assert seen == [good["old_contents"] + good["new_contents"]]
    assert result.dropped == {"too_many_chars": 1, "too_few_chunks": 1, "too_many_tokens": 1}


def test_small_records_skip_tokenization(monkeypatch):
    monkeypatch.setattr(filters, "count_tokens_batch", lambda texts, *a, **k: pytest.fail("tokenized"))
    small = record(*with_inserts({2: 1, 4: 1}, BASE[:6]))
    assert len(filter_records([small], paper_filter()).kept) == 1


def test_filter_stage_metrics_and_bad_lines(tmp_path):
    from stages.filter import run

    good = record(*with_inserts({10: 1, 20: 1}), repos="r", timestamp=5, extra="kept")
    crlf_old, crlf_new = (t.replace("\n", "\r\n") for t in with_inserts({10: 1, 20: 1}))
    lines = [
        json.dumps(good),
        json.dumps(record(crlf_old, crlf_new, lang="Go")),  # CRLF is normalized, not an edit everywhere
        json.dumps(record(*with_inserts({10: 1}), lang="Go")),
        "{not json",
        json.dumps({"commit": "c", "new_file": "f", "lang": "C", "old_contents": "a", "new_contents": 3}),
        json.dumps(record("a\x00", "b")),
        "",
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n")
    metrics = run(paper_filter(), input_path=src, output_path=tmp_path / "out.jsonl", metrics_path=tmp_path / "m.json")
    assert metrics["records_in"] == 6
    assert metrics["records_out"] == 2
    assert metrics["dropped.malformed_json"] == 1
    assert metrics["dropped.bad_type_new_contents"] == 1
    assert metrics["dropped.nul_bytes"] == 1
    assert metrics["dropped.too_few_chunks"] == 1
    assert metrics["language.Go.in"] == 2 and metrics["language.Go.out"] == 1
    assert json.loads((tmp_path / "m.json").read_text()) == metrics
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert out[0]["extra"] == "kept" and out[0]["timestamp"] == 5 and out[0]["repos"] == "r"
    assert "\r" not in out[1]["new_contents"]


# ------------------------------------------------------------------ windows: clusters


CLUSTERS = paper_filter(max_chars=0, max_tokens=0, edit_types=["add", "delete", "replace"], max_window_lines=30,
                        windows="clusters")


def test_windows_file_is_the_default_and_drops_far_apart_edits():
    old, new = with_inserts({10: 1, 14: 1, 100: 1, 104: 1})
    assert paper_filter().windows == "file"
    assert structural_reason(old, new, paper_filter(max_chars=0, max_tokens=0, max_window_lines=30)) == "window_too_long"


def test_clusters_cut_a_file_into_one_record_per_cluster_of_nearby_chunks():
    # two clusters of two chunks far apart, a lone chunk, and a chunk too long between them
    old, new = with_inserts({10: 1, 14: 1, 60: 1, 100: 1, 104: 2, 130: 6})
    counts: Counter = Counter()
    reason, slices = filters.cluster_windows(old, new, CLUSTERS, counts)
    assert reason is None and len(slices) == 2
    assert counts == {"chunks.in": 6, "chunks.in_windows": 4, "chunks.dropped.chunk_too_long": 1,
                      "windows.dropped.too_few_chunks": 1}
    rows = filters.window_records(record(old, new), slices)
    assert [r["window"]["index"] for r in rows] == [0, 1]
    for r in rows:  # each slice holds exactly its cluster's two chunks, the rest unchanged lines
        assert len(diff_chunks(r["old_contents"], r["new_contents"])) == 2
        a = r["window"]["old_start"]
        assert old.splitlines(keepends=True)[a:a + r["old_contents"].count("\n")] == r["old_contents"].splitlines(keepends=True)
    # the first slice runs from the file's start to the lone chunk; the second from it to the long one
    assert rows[0]["old_contents"].startswith("value_0 = 0\n") and rows[0]["old_contents"].endswith("value_59 = 59\n")
    assert rows[1]["old_contents"].startswith("value_60 = 60\n") and rows[1]["old_contents"].endswith("value_129 = 129\n")
    assert "added_60_0" not in rows[0]["new_contents"] + rows[1]["new_contents"]


def test_clusters_grow_while_the_window_fits():
    # chunks every 10 lines: a 30-line window (with 3 context lines each side) takes three of them
    old, new = with_inserts({20: 1, 30: 1, 40: 1, 50: 1, 60: 1, 70: 1})
    reason, slices = filters.cluster_windows(old, new, CLUSTERS, Counter())
    assert reason is None and len(slices) == 2
    for a0, a1, b0, b1 in slices:
        sub_old = "".join(old.splitlines(keepends=True)[a0:a1])
        sub_new = "".join(new.splitlines(keepends=True)[b0:b1])
        assert structural_reason(sub_old, sub_new, CLUSTERS) is None  # each passes the paper's checks alone


def test_clusters_drop_reasons_and_metrics():
    lone_only = with_inserts({10: 1, 100: 1})
    one_chunk = with_inserts({10: 1})
    good = with_inserts({10: 1, 14: 1, 100: 1, 104: 1})
    result = filter_records([record(*lone_only), record(*one_chunk), record(*good), record("a\n", "a\n")], CLUSTERS)
    assert len(result.kept) == 2
    assert result.metrics() == {
        "records_in": 4, "records_out": 2, "dropped.no_change": 1, "dropped.no_window": 1,
        "dropped.too_few_chunks": 1, "files_out": 1, "chunks.in": 6, "chunks.in_windows": 4,
        "windows.dropped.too_few_chunks": 2, "language.Python.in": 4, "language.Python.out": 2,
    }
    # the paper's mode on the same records: no window-level keys
    plain = filter_records([record(*good)], paper_filter(max_chars=0, max_tokens=0, max_window_lines=30))
    assert plain.metrics() == {"records_in": 1, "records_out": 0, "dropped.window_too_long": 1,
                               "language.Python.in": 1, "language.Python.out": 0}


def test_clusters_token_check_per_window():
    good = with_inserts({10: 1, 14: 1, 100: 1, 104: 1})
    config = CLUSTERS.model_copy(update={"max_tokens": 1})
    result = filter_records([record(*good)], config)
    assert result.kept == []
    metrics = result.metrics()
    assert metrics["windows.dropped.too_many_tokens"] == 2 and metrics["dropped.too_many_tokens"] == 1
    assert metrics["files_out"] == 0


def test_clusters_stage_matches_in_memory(tmp_path):
    good = with_inserts({10: 1, 14: 1, 100: 1, 104: 1})
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(record(*r, old_file="f.py", repos="r", subject="s", message="m")) + "\n"
                           for r in [good, good]))
    out = tmp_path / "out.jsonl"
    metrics = filters.run_filter(src, out, CLUSTERS, workers=1)
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["window"]["index"] for r in rows] == [0, 1, 0, 1]
    assert metrics["records_out"] == 4 and metrics["files_out"] == 2
