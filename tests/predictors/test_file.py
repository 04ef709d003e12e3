"""The `file` predictor: generations made elsewhere, matched to the test set by id, commit + file
or a unique ground truth (never by position), with every row's fate and every miss counted."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_example

from nep.core.prompts import NEXT
from nep.predictors.base import Settings
from nep.predictors.kinds import build_predictor
from nep.predictors.runner import generate
from nep.util.errors import NepError
from nep.util.jsonl import read_jsonl, write_jsonl


def nep_example(n: int, *, commit: str | None = None, new_file: str | None = None, nxt: str | None = None) -> dict:
    """A test example as the NEP-dataset split gives it: commit, old_file and new_file fields."""
    path = new_file or f"src/f{n}.py"
    ex = make_example(f"a = {n}\n", f"a = {n}\nb = {n}\n", nxt or f"a = {n}\nb = {n}\nc = {n}\n", path=path)
    ex.update(id=f"ex{n}", commit=commit or f"c{n}", new_file=path, old_file=path)
    return ex


@pytest.fixture
def test_set(tmp_path: Path) -> list[dict]:
    exs = [nep_example(n) for n in range(6)]
    write_jsonl(tmp_path / "test.jsonl", exs)
    return exs


def run(tmp_path: Path, rows: list, entry_extra: dict | None = None) -> tuple[list[dict], dict]:
    path = tmp_path / "theirs.jsonl"
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    metrics = generate(
        "theirs", {"kind": "file", "path": str(path), "needs": str(path), **(entry_extra or {})}, Settings.of(max_new_tokens=16),
        test_path=tmp_path / "test.jsonl", out_path=tmp_path / "out.jsonl", metrics_path=tmp_path / "m.json",
        timing_path=tmp_path / "t.json", progress=False,
    )
    return list(read_jsonl(tmp_path / "out.jsonl")), metrics


def test_rows_match_by_id_then_commit_and_file_then_unique_ground_truth(tmp_path, test_set, monkeypatch):
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    exs = test_set
    rows = [
        {"output": "by ground truth\n", "ground_truth": exs[4]["next"]},  # file order ≠ test order
        {"id": "ex0", "output": "by id\n"},
        {"commit": "c1", "new_file": "src/f1.py", "model_output": "by commit + new_file\n"},
        {"commit": "c2", "old_file": "src/f2.py", "output": "by commit + old_file\n"},
        {"commit": "c3", "path": "src/f3.py", "output": "by commit + path\n"},
        {"id": "not-ours", "commit": "c5", "new_file": "src/f5.py", "output": "id misses, commit finds\n"},
    ]
    records, metrics = run(tmp_path, rows)
    assert [r["output"] for r in records] == [
        "by id\n", "by commit + new_file\n", "by commit + old_file\n", "by commit + path\n", "by ground truth\n",
        "id misses, commit finds\n",
    ]
    assert all(r["extracted"] and r["extraction"] == "direct" for r in records)
    assert [r["commit"] for r in records] == [e["commit"] for e in exs]
    assert metrics["file.matched"] == 6 and metrics["file.missing"] == 0
    assert (metrics["file.matched_by.id"], metrics["file.matched_by.commit_file"],
            metrics["file.matched_by.ground_truth"]) == (1, 4, 1)


def test_unmatched_ambiguous_duplicate_bad_and_missing_are_counted(tmp_path, monkeypatch):
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    same_truth = "shared = 1\n"
    exs = [nep_example(0), nep_example(1, nxt=same_truth), nep_example(2, nxt=same_truth), nep_example(3)]
    write_jsonl(tmp_path / "test.jsonl", exs)
    rows = [
        {"id": "ex0", "output": "first\n"},
        {"id": "ex0", "output": "second\n"},  # duplicate: the first row counts
        {"output": "which?\n", "ground_truth": same_truth},  # two examples have it: ambiguous
        {"output": "nobody's\n", "ground_truth": "no such truth\n"},  # unmatched
        {"output": "nothing to match on\n"},  # unmatched (no key at all)
        {"id": "ex3", "output": 5},  # no string output
        "{not json",
        "[1, 2]",
    ]
    records, metrics = run(tmp_path, rows, {"max_failure_rate": 0.75})  # 3 of 4 examples missing: tolerated
    assert records[0]["output"] == "first\n"
    for r in records[1:]:
        assert (r["output"], r["extracted"], r["extraction"], r["raw_output"]) == ("", False, "missing", "")
    assert metrics == {**metrics, "file.rows": 8, "file.matched": 1, "file.duplicate": 1, "file.ambiguous": 1,
                       "file.unmatched": 2, "file.bad_rows.no_output": 1, "file.bad_rows.malformed_json": 1,
                       "file.bad_rows.not_an_object": 1, "file.missing": 3, "extraction.missing": 3,
                       "unextracted": 3}


def test_commit_alone_or_position_never_matches(tmp_path, test_set, monkeypatch):
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    rows = [{"commit": "c0", "output": "no file name\n"}, {"output": "row two\n"}, {"output": "row three\n"}]
    records, metrics = run(tmp_path, rows, {"max_failure_rate": 1.0})
    assert all(r["extraction"] == "missing" for r in records)
    assert metrics["file.unmatched"] == 3 and metrics["file.missing"] == len(test_set)


def test_identical_duplicate_examples_are_filled_in_turn(tmp_path, monkeypatch):
    """The benchmark keeps exact duplicates: rows matching several identical examples fill them."""
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    twin = nep_example(7)
    exs = [twin, {**twin, "id": "ex7-dup"}, nep_example(8)]
    write_jsonl(tmp_path / "test.jsonl", exs)
    rows = [{"commit": "c7", "new_file": "src/f7.py", "output": "x\n"}] * 3
    records, metrics = run(tmp_path, rows, {"max_failure_rate": 0.5})
    assert [r["output"] for r in records] == ["x\n", "x\n", ""]
    assert (metrics["file.matched"], metrics["file.duplicate"], metrics["file.missing"]) == (2, 1, 1)


def test_outputs_with_markers_or_tags_are_extracted(tmp_path, test_set, monkeypatch):
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    rows = [
        {"id": "ex0", "output": f"{test_set[0]['prompt']}a = 9\n\n"},  # the model echoed the prompt
        {"id": "ex1", "output": "Sure:\n<next_version>\nb = 9\n</next_version>"},
        {"id": "ex2", "output": "I cannot help with that."},  # as is: no markers, no tags
    ]
    records, _ = run(tmp_path, rows, {"max_failure_rate": 0.5})
    assert NEXT in records[0]["raw_output"]
    assert (records[0]["output"], records[0]["extraction"]) == ("a = 9\n", "marker")
    assert (records[1]["output"], records[1]["extraction"]) == ("b = 9\n", "closed_tag")
    assert (records[2]["output"], records[2]["extraction"]) == ("I cannot help with that.", "direct")


def test_rows_marked_unextracted_stay_misses_with_their_reason(tmp_path, test_set, monkeypatch):
    """nep's own records (and run_examples exports) say `extracted: false` for an answer that held no
    next version: re-scored, it is the same miss with the same reason, never an empty next version."""
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    block = "<<<<<<< ORIGINAL\nnot in the file\n=======\nx\n>>>>>>> UPDATED\n"
    rows = [
        {"id": "ex0", "output": "", "raw_output": block, "extracted": False, "extraction": "block_not_found",
         "stop": "eos"},
        {"id": "ex1", "output": "", "extracted": False, "extraction": "Not A Reason!", "stop": "eos"},
        {"id": "ex2", "output": "", "raw_output": "x = x = x", "extracted": False, "extraction": "incomplete",
         "stop": "growth_limit"},
        {"id": "ex3", "output": test_set[3]["next"], "extracted": True, "extraction": "completion", "stop": "eos"},
        {"id": "ex4", "output": ""},  # no flag: an empty next version, as before
        {"id": "ex5", "output": "", "extracted": False},
    ]
    records, metrics = run(tmp_path, rows)
    got = [(r["output"], r["extracted"], r["extraction"]) for r in records]
    assert got == [("", False, "block_not_found"), ("", False, "unextracted"), ("", False, "incomplete"),
                   (test_set[3]["next"], True, "direct"), ("", True, "direct"), ("", False, "unextracted")]
    assert records[0]["raw_output"] == block and records[2]["raw_output"] == "x = x = x"
    # ended as the original run counted it: every row but the one cut at the growth limit
    assert (metrics["ended"], metrics["extracted"], metrics["stop.eos"]) == (5, 2, 3)
    assert metrics["extraction.block_not_found"] == 1 and metrics["extraction.unextracted"] == 2


def test_a_missing_file_names_the_param(tmp_path, test_set):
    predictor = build_predictor("theirs", {"kind": "file", "path": str(tmp_path / "none.jsonl")})
    with pytest.raises(NepError, match=r"generate\.predictors\.theirs\.path: .*none\.jsonl: file not found"):
        list(predictor.predict(test_set, [0], Settings.of(max_new_tokens=8)))


# ------------------------------------------------ a file that matches too little fails (issue 31, item 3)
OTHER_SET = [nep_example(n, commit=f"other{n}", new_file=f"lib/g{n}.py", nxt=f"z = {n}\n") for n in range(10, 16)]
TOO_LITTLE = {
    "an empty file": ([], "the file has no rows"),
    "wrong ids": ([{"id": f"nosuch{n}", "output": "x\n"} for n in range(6)],
                  "6 match no test example by id, commit + file or ground truth (line 1 (id 'nosuch0'), "
                  "line 2 (id 'nosuch1'), line 3 (id 'nosuch2'))"),
    "outputs that are not strings": ([{"id": f"ex{n}", "output": n} for n in range(6)],
                                     "6 have no string `output` (or `model_output`) (line 1 (id 'ex0'), "),
    "another data set's rows": ([{k: ex[k] for k in ("commit", "new_file")} | {"output": ex["next"],
                                "ground_truth": ex["next"]} for ex in OTHER_SET],
                                "6 match no test example by id, commit + file or ground truth (line 1, line 2, line 3)"),
}


@pytest.mark.parametrize("case", TOO_LITTLE)
def test_a_file_matching_too_few_examples_fails_in_one_line_naming_what_and_why(tmp_path, test_set, monkeypatch,
                                                                                 case):
    from nep.predictors.runner import TooManyFailedGenerations

    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    rows, why = TOO_LITTLE[case]
    with pytest.raises(TooManyFailedGenerations) as error:
        run(tmp_path, rows)
    line = str(error.value)
    assert "\n" not in line and line.startswith("generate.predictors.theirs.max_failure_rate: 6 of 6 test examples "
                                                "have no row in "), line
    assert "(first: ex0, ex1, ex2, ...)" in line and why in line and "more than max_failure_rate=0.0" in line
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "m.json").exists()
    # tolerated, the misses are written as `missing` records and counted
    records, metrics = run(tmp_path, rows, {"max_failure_rate": 1.0})
    assert [r["extraction"] for r in records] == ["missing"] * 6 and metrics["file.missing"] == 6


def test_a_partial_file_fails_only_above_its_max_failure_rate(tmp_path, test_set, monkeypatch):
    from nep.predictors.runner import TooManyFailedGenerations

    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    rows = [{"id": f"ex{n}", "output": "x\n"} for n in range(4)] + [{"id": "ex0", "output": "again\n"}, "{bad"]
    with pytest.raises(TooManyFailedGenerations, match=r"2 of 6 test examples have no row in .*\(first: ex4, ex5\): "
                       r"of its 6 rows, 1 repeat an example already matched \(line 5 \(id 'ex0'\)\); "
                       r"1 are not JSON \(line 6\); more than max_failure_rate=0.3"):
        run(tmp_path, rows, {"max_failure_rate": 0.3})
    _, metrics = run(tmp_path, rows, {"max_failure_rate": 0.34})
    assert (metrics["file.missing"], metrics["file.matched"]) == (2, 4)


def test_the_stage_says_it_in_one_line_and_exit_1(tmp_path, test_set):
    import subprocess
    import sys

    import yaml
    from conftest import REPO_ROOT, problem_lines

    (tmp_path / "data" / "split").mkdir(parents=True)
    write_jsonl(tmp_path / "data" / "split" / "test.jsonl", test_set)
    (tmp_path / "theirs.jsonl").write_text("")
    entry = {"kind": "file", "path": "theirs.jsonl", "needs": "theirs.jsonl"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"generate": {"predictors": {"theirs": entry}}}))
    done = subprocess.run([sys.executable, "-m", "stages.generate", "--predictor", "theirs"], cwd=tmp_path,
                          capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO_ROOT), "NEP_CACHE_DIR": str(tmp_path)})
    assert done.returncode == 1 and "Traceback" not in done.stderr
    lines = problem_lines(done.stderr)
    assert len(lines) == 1 and "max_failure_rate: 6 of 6 test examples have no row in theirs.jsonl" in lines[0], lines
