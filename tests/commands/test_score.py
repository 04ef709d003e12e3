"""`nep score` (nep.commands.score): the same numbers as the pipeline's evaluate on the same files,
the outputs it writes, and one line for each kind of bad input."""

from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

import pytest

from nep.commands.score import load_test, main
from nep.config.schema import Judge, Split
from nep.data.split import split_dataset
from nep.evaluate.evaluation import evaluate
from nep.predictors.base import Settings
from nep.predictors.runner import generate
from nep.util.errors import NepError
from nep.util.jsonl import write_jsonl
from stages.judge import run as judge_run

SAMPLES = 300  # bootstrap resamples (both sides use the same)


def nep_row(k: int) -> dict:
    """An NEP-schema row as the paper's test rows are: two added lines, the current version has the first."""
    base = [f"v{k}_{i} = load({i})\n" for i in range(20)]
    new, cur = list(base), list(base)
    new.insert(14, f"use(v{k}_13)\n")
    for lines in (new, cur):
        lines.insert(4, f"use(v{k}_3)\n")
    old, new_text, current = "".join(base), "".join(new), "".join(cur)
    if k % 3 == 0:  # some files without a final newline
        old, new_text, current = old.rstrip("\n"), new_text.rstrip("\n"), current.rstrip("\n")
    path = f"pkg/m{k}.py"
    diff = "\n".join(difflib.unified_diff(old.splitlines(), current.splitlines(), lineterm="", fromfile=path,
                                          tofile=path))
    text = f"<|original_code|>\n{old}\n<|edits_diff|>\n{diff}\n<|current_version|>\n{current}\n" \
           f"<|next_version|>\n{new_text}\n"
    return {"commit": f"{k:040x}", "message": "use", "old_file": path, "new_file": path, "status": "M",
            "old_contents": old, "new_contents": new_text, "current_contents": current, "text": text}


def answer(r: dict, variant: int) -> str:
    new, cur = r["new_contents"], r["current_contents"]
    return [new, cur, new.replace("use(", "print("), "import os\n" + cur, new + "\n"][variant % 5]


@pytest.fixture
def files(tmp_path, monkeypatch):
    """A test set of 15 NEP rows and two predictions files keyed as the paper's scripts key them
    (commit + file; the second also by ground truth, one row unmatched and one missing)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    rows = [nep_row(k) for k in range(15)]
    write_jsonl(tmp_path / "test.jsonl", rows)
    write_jsonl(tmp_path / "train.jsonl", [nep_row(100 + k) for k in range(3)])
    a = [{"commit": r["commit"], "new_file": r["new_file"], "output": answer(r, k)} for k, r in enumerate(rows)]
    b = [{"ground_truth": r["new_contents"], "model_output": answer(r, k * 2 + 1)} for k, r in enumerate(rows[1:])]
    b.append({"id": "not-in-the-test-set", "output": "x"})
    write_jsonl(tmp_path / "alpha.jsonl", a)
    write_jsonl(tmp_path / "beta.jsonl", b)
    return tmp_path


def pipeline(tmp_path: Path) -> tuple[dict, dict]:
    """The pipeline's way: split (external), generate@file, judge (rules), evaluate."""
    split, _ = split_dataset(Split(strategy="external", external_test="test.jsonl", external_train="train.jsonl"),
                             examples_path=tmp_path / "unused.jsonl")
    write_jsonl(tmp_path / "data/split/test.jsonl", split.test)
    inputs = {}
    for name in ("alpha", "beta"):
        generate(name, {"kind": "file", "path": f"{name}.jsonl", "max_failure_rate": 0.1}, Settings.of(),
                 test_path="data/split/test.jsonl", progress=False)
        judge_run(Judge(), predictor=name)
        inputs[name] = (Path(f"data/generate/{name}.jsonl"), Path(f"data/judge/{name}.jsonl"))
    ev = evaluate(inputs, reference="", context_lines=3, bootstrap_samples=SAMPLES, seed=0)
    return ev.headline, ev.details


def test_score_equals_the_pipelines_evaluate_on_the_same_files(files, capsys):
    headline, details = pipeline(files)
    assert main(["--test", "test.jsonl", "--predictions", "alpha.jsonl", "beta.jsonl", "--output", "out",
                 "--bootstrap-samples", str(SAMPLES), "--max-missing", "0.1"]) == 0
    assert json.loads(Path("out/evaluate.json").read_text()) == headline
    assert json.loads(Path("out/evaluate/details.json").read_text()) == details
    assert "beta.exact_match_p" in headline and "alpha.exact_match_p" not in headline  # the first is the reference
    # the numbers are not all alike: some hits, some misses
    assert 0 < headline["alpha.exact_match"] < 1 and headline["alpha.n"] == 15
    out, err = capsys.readouterr()
    assert "beta (beta.jsonl): 15 rows, 14 matched (ground_truth 14), 1 unmatched; 1 of 15 test examples missing" in err
    assert "judge: offline rules judge" in out
    assert all(len(line) <= 80 for line in out.splitlines()[1:])
    assert re.search(r"exact_match +\d+\.\d \[", out)
    score = json.loads(Path("out/score.json").read_text())
    assert score["beta.file.unmatched"] == 1 and score["reference"] == "alpha"
    assert Path("out/generate/alpha.jsonl").exists() and Path("out/judge/beta.jsonl").exists()


def test_reference_by_name_and_the_page(files, capsys):
    assert main(["--test", "test.jsonl", "--predictions", "alpha.jsonl", "beta.jsonl", "--reference", "beta",
                 "--output", "out", "--bootstrap-samples", "50", "--max-missing", "0.1"]) == 0
    headline = json.loads(Path("out/evaluate.json").read_text())
    assert "alpha.delta_chrf_p" in headline and "beta.delta_chrf_p" not in headline
    page = Path("out/examples.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(src|href)=["']?(https?:)?//""", page)  # nothing fetched from the network
    assert page.count('<section class="ex"') == 15
    assert '<span class="add">+use(v1_13)</span>' in page  # a real diff line of the true edit
    assert "missing from the predictions file" in page  # beta has no row for the first example
    assert "beta (ref)" in capsys.readouterr().out


def test_a_local_dataset_directory_is_read_as_the_hub_would_be(files):
    """A directory standing in for the hub repository (data/test.jsonl), read through `datasets`."""
    Path("repo/data").mkdir(parents=True)
    Path("repo/data/test.jsonl").write_text(Path("test.jsonl").read_text())
    test = load_test("repo")
    assert test.format == "nep" and len(test.examples) == 15
    assert [e["id"] for e in test.examples] == [e["id"] for e in load_test("test.jsonl").examples]


def test_nep_examples_are_a_test_set_too(files):
    """nep's own examples (data/split/test.jsonl) score as the NEP rows they came from."""
    split, _ = split_dataset(Split(strategy="external", external_test="test.jsonl", external_train="train.jsonl"),
                             examples_path=files / "unused.jsonl")
    write_jsonl("examples.jsonl", split.test)
    test = load_test("examples.jsonl")
    assert test.format == "processed" and [e["id"] for e in test.examples] == [e["id"] for e in split.test]


@pytest.mark.parametrize("row, line", [
    ({"commit": "0" * 40, "new_file": "pkg/m0.py"}, "beta.jsonl: row 2: field output: missing"),
    ({"commit": "0" * 40, "new_file": "pkg/m0.py", "output": 3}, "beta.jsonl: row 2: field output: not text (int)"),
    ({"output": "x"}, "beta.jsonl: row 2: no field to match it to a test example"),
    ("{not json", "beta.jsonl: row 2: not JSON"),
])
def test_a_bad_predictions_row_is_one_line_naming_file_row_and_field(files, row, line):
    text = row if isinstance(row, str) else json.dumps(row)
    Path("beta.jsonl").write_text(json.dumps({"id": "a", "output": "x"}) + "\n" + text + "\n")
    with pytest.raises(NepError) as e:
        main(["--test", "test.jsonl", "--predictions", "alpha.jsonl", "beta.jsonl"])
    assert str(e.value).startswith(line) and "\n" not in str(e.value)


def test_a_file_lacking_examples_is_one_line_unless_allowed(files):
    with pytest.raises(NepError) as e:
        main(["--test", "test.jsonl", "--predictions", "alpha.jsonl", "beta.jsonl"])
    line = str(e.value)
    assert line.startswith("1 of 15 test examples have no row in beta.jsonl") and "--max-missing" in line
    assert "max_failure_rate" not in line and "\n" not in line


def test_a_bad_test_row_and_a_bad_reference_are_one_line(files):
    rows = [json.loads(x) for x in Path("test.jsonl").read_text().splitlines()]
    del rows[4]["current_contents"]
    write_jsonl("broken.jsonl", rows)
    with pytest.raises(NepError, match=r"^broken.jsonl: row 5: field current_contents: missing"):
        main(["--test", "broken.jsonl", "--predictions", "alpha.jsonl"])
    with pytest.raises(NepError, match=r"--reference 'gamma': not one of the predictions files' names \(alpha\)"):
        main(["--test", "test.jsonl", "--predictions", "alpha.jsonl", "--reference", "gamma"])
    with pytest.raises(NepError, match=r"nowhere.jsonl: no such file or directory, and not a hub id"):
        main(["--test", "nowhere.jsonl", "--predictions", "alpha.jsonl"])
