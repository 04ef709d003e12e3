"""The published NEP dataset as split's input: its schema in JSONL, Parquet and a local directory
standing in for the hub, used as given (hand-made current version, the paper's ground truth), with
duplicates kept and counted, leakage removed by commit, and one clear line when the hub is missing."""

from __future__ import annotations

import difflib
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO_ROOT

from nep.config.schema import Split
from nep.core.edits import current_version
from nep.core.prompts import build_prompt, paper_prompt, parse_prompt
from nep.data.nep_dataset import HUB_ID, load_external, nep_examples
from nep.data.split import split_dataset
from nep.util.errors import NepError

OLD = "".join(f"x{i} = {i}\n" for i in range(8))
NEW = OLD.replace("x2 = 2\n", "x2 = 2\ny = 1\n").replace("x6 = 6\n", "x6 = 6\nz = y\n")
# Hand-made and deliberately NOT what nep would compute (nep reverts the last chunk; this reverts the first).
CURRENT = OLD.replace("x6 = 6\n", "x6 = 6\nz = y\n")


def paper_text(old: str, current: str, new: str, old_file: str, new_file: str) -> str:
    """The training text as the paper's template lays it out (each section followed by a newline)."""
    diff = "\n".join(difflib.unified_diff(old.splitlines(), current.splitlines(), lineterm="",
                                          fromfile=old_file, tofile=new_file))
    return (f"<|original_code|>\n{old}\n<|edits_diff|>\n{diff}\n<|current_version|>\n{current}\n"
            f"<|next_version|>\n{new}\n")


def nep_record(commit: str = "c" * 40, new_file: str = "pkg/mod.py", **changes) -> dict:
    r = {"commit": commit, "message": "add y and use it", "old_file": new_file, "new_file": new_file,
         "status": "M", "old_contents": OLD, "new_contents": NEW, "current_contents": CURRENT}
    r["text"] = paper_text(OLD, CURRENT, NEW, new_file, new_file)
    r.update(changes)
    return r


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_nep_records_become_examples_as_given():
    rows = [nep_record(), nep_record(), nep_record(new_file="src/lib.rs"), nep_record(text=None),
            nep_record(current_contents=None), nep_record(commit=""), nep_record(old_contents=3)]
    drops, stats = Counter(), Counter()
    examples = list(nep_examples(rows, drops, stats))
    assert drops == Counter({"missing_current_contents": 1, "empty_commit": 1, "bad_type_old_contents": 1})
    assert len(examples) == 4 and stats["duplicates_kept"] == 1  # the exact duplicate is kept, and counted
    assert len({e["id"] for e in examples}) == 4
    e = examples[0]
    assert current_version(OLD, NEW) != CURRENT  # nep would compute another current version
    assert e["current"] == CURRENT and e["original"] == OLD  # the hand-made version, as given
    assert e["next"] == NEW  # the real next version: what every predictor is scored against
    assert e["completion"] == NEW + "\n"  # what the paper trains on: text after <|next_version|>\n
    assert e["text"] == e["prompt"] + e["completion"]
    assert paper_prompt(OLD, CURRENT, old_file="pkg/mod.py", new_file="pkg/mod.py") + e["completion"] == rows[0]["text"]
    assert e["prompt"] == build_prompt(OLD, CURRENT, path="pkg/mod.py")  # nep's own prompt format
    assert parse_prompt(e["prompt"])["current"] == CURRENT
    assert (e["commit"], e["old_file"], e["new_file"], e["path"]) == ("c" * 40, "pkg/mod.py", "pkg/mod.py", "pkg/mod.py")
    assert e["language"] == "Python" and examples[2]["language"] == "unknown" and e["repos"] == ""
    assert examples[3]["next"] == NEW and examples[3]["completion"] == NEW + "\n"  # no text: the same template
    assert stats["next_from_text"] == 3 and stats["text_disagrees"] == 0
    assert stats["prompt_differs_from_text"] == 3  # whole files end with a newline; the template adds one more
    assert stats["language.Python"] == 3 and stats["language.unknown"] == 1


def test_text_is_the_completion_when_it_disagrees():
    odd = nep_record(text=paper_text(OLD, CURRENT, NEW + "extra = 1\n", "pkg/mod.py", "pkg/mod.py"))
    stats: Counter = Counter()
    [e] = nep_examples([odd], Counter(), stats)
    assert e["completion"] == NEW + "extra = 1\n\n" and stats["text_disagrees"] == 1
    assert e["next"] == NEW  # the ground truth stays new_contents


def test_prompt_is_the_papers_for_files_without_a_final_newline():
    """The benchmark's rows are cut to a window and joined without a final newline: there nep's
    prompt is byte for byte the prompt part of the paper's text."""
    old = OLD.rstrip("\n")
    new = NEW.rstrip("\n")
    current = old.replace("x2 = 2\n", "x2 = 2\ny = 1\n")  # the diff's context stops before the last line
    row = nep_record(old_contents=old, current_contents=current, new_contents=new,
                     text=paper_text(old, current, new, "pkg/mod.py", "pkg/mod.py"))
    stats: Counter = Counter()
    [e] = nep_examples([row], Counter(), stats)
    assert e["prompt"] + e["completion"] == row["text"] and e["next"] == new and e["completion"] == new + "\n"
    assert stats["prompt_differs_from_text"] == 0


def test_local_jsonl_and_parquet_in_the_nep_schema(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = [nep_record(commit=f"{i:040x}") for i in range(3)]
    jsonl = load_external(str(write_jsonl(tmp_path / "test.jsonl", rows)), split="test", revision="main",
                          param="external_test")
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "test.parquet")
    parquet = load_external(str(tmp_path / "test.parquet"), split="test", revision="main", param="external_test")
    assert jsonl.format == parquet.format == "nep" and jsonl.examples == parquet.examples
    assert [e["commit"] for e in jsonl.examples] == [r["commit"] for r in rows]  # input order


def test_processed_files_still_work_and_unknown_files_are_named(tmp_path):
    processed = [{"id": f"e{i}", "repos": "r", "commit": f"k{i}", "prompt": "p", "completion": "c"} for i in range(3)]
    ext = load_external(str(write_jsonl(tmp_path / "p.jsonl", processed + [{"id": 1}])), split="test",
                        revision="main", param="external_test")
    assert ext.format == "processed" and len(ext.examples) == 3 and ext.drops == Counter({"bad_example": 1})
    with pytest.raises(NepError, match=r"split.external_test: .*other.jsonl: neither the NEP schema.*first record has a, b"):
        load_external(str(write_jsonl(tmp_path / "other.jsonl", [{"a": 1, "b": 2}])), split="test",
                      revision="main", param="external_test")
    with pytest.raises(NepError, match="split.external_train: nowhere/at/all.jsonl: no such file"):
        load_external("nowhere/at/all.jsonl", split="train", revision="main", param="external_train")


def hub_standin(root: Path, train: list[dict], test: list[dict]) -> Path:
    """A directory laid out like the hub repository: data/<split>.jsonl."""
    write_jsonl(root / "data" / "train.jsonl", train)
    write_jsonl(root / "data" / "test.jsonl", test)
    return root


def test_hub_standin_as_train_and_test_with_leakage_removed(tmp_path):
    train = [nep_record(commit=f"{i:040x}") for i in range(6)]
    test = [nep_record(commit=f"{i:040x}", new_file="t.go") for i in (4, 5, 7)] + [nep_record(commit=f"{7:040x}", new_file="t.go")]
    hub = str(hub_standin(tmp_path / "hub", train, test))
    split, metrics = split_dataset(Split(strategy="external", test_fraction=0.2, seed=0, external_test=hub, external_train=hub),
                                   examples_path=tmp_path / "not-read.jsonl")
    assert [e["commit"] for e in split.train] == [f"{i:040x}" for i in range(4)]
    assert len(split.test) == 4 and {e["language"] for e in split.test} == {"Go"}
    assert metrics["dropped.leaked"] == 2 and metrics["train"] == 4 and metrics["test"] == 4
    assert metrics["format.train"] == metrics["format.test"] == "nep"
    assert metrics["external_test.duplicates_kept"] == 1 and metrics["external_test.language.Go"] == 4
    assert metrics["external_train.language.Python"] == 6
    again = split_dataset(Split(strategy="external", test_fraction=0.2, seed=0, external_test=hub, external_train=hub),
                          examples_path=tmp_path / "not-read.jsonl")
    assert again == (split, metrics)


def test_nep_train_with_a_strategy_of_its_own_and_param_errors(tmp_path):
    hub = str(hub_standin(tmp_path / "hub", [nep_record(commit=f"{i:040x}") for i in range(10)], [nep_record()]))
    x = tmp_path / "x.jsonl"

    def split_dataset_(**kw):
        return split_dataset(Split(test_fraction=0.2, seed=0, **kw), examples_path=x)

    split, metrics = split_dataset_(strategy="auto", external_test="", external_train=hub)
    assert metrics["strategy"] == "time" and metrics["train"] + metrics["test"] == 10 and split.test
    with pytest.raises(NepError, match="split.external_test is set but split.strategy is 'auto'"):
        split_dataset_(strategy="auto", external_test=hub, external_train="")
    with pytest.raises(NepError, match="split.external_test is empty"):
        split_dataset_(strategy="external", external_test="", external_train=hub)
    (tmp_path / "only-test").mkdir()
    write_jsonl(tmp_path / "only-test" / "data" / "test.jsonl", [nep_record()])
    with pytest.raises(NepError, match="split.external_train: cannot read split 'train'"):
        split_dataset_(strategy="external", external_test=hub, external_train=str(tmp_path / "only-test"))


def test_missing_hub_is_one_line_naming_the_param(tmp_path):
    """The hub id with the hub unreachable (offline, nothing cached): one line, no traceback."""
    (tmp_path / "params.yaml").write_text(
        f"split:\n  strategy: external\n  external_test: {HUB_ID}\n  external_train: {HUB_ID}\n")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": str(tmp_path / "hf"), "PYTHONPATH": str(REPO_ROOT)}
    env.pop("HF_DATASETS_CACHE", None)
    env.pop("HF_HUB_CACHE", None)
    result = subprocess.run([sys.executable, "-m", "stages.split"], cwd=tmp_path, env=env, capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 1
    last = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr
    assert last.startswith(f"split.external_train: cannot read split 'train' of {HUB_ID}")
    assert "HF_HUB_OFFLINE=1" in last and "local JSONL/Parquet file" in last


@pytest.mark.slow
def test_paper_benchmark_preset_through_dvc_on_a_hub_standin(tmp_path):
    """presets/paper-benchmark.yaml, its hub id swapped for a local stand-in, through `dvc exp run split`."""
    from conftest import project_on_history, run_dvc

    train = [nep_record(commit=f"{i:040x}") for i in range(5)]
    test = [nep_record(commit=f"{i:040x}", new_file="t.go") for i in (4, 9)] + [nep_record(commit=f"{9:040x}", new_file="t.go")]
    hub = hub_standin(tmp_path / "hub", train, test)
    project = project_on_history(tmp_path, repos=1, commits_per_repo=8)
    subprocess.run([sys.executable, "-m", "nep", "presets", "paper-benchmark"], cwd=project, check=True,
                   capture_output=True)
    run_dvc(project, "exp", "run", "split", "-S", f"split.external_test={hub}", "-S", f"split.external_train={hub}")
    metrics = json.loads((project / "metrics/split.json").read_text())
    assert metrics["strategy"] == "external" and metrics["format.train"] == metrics["format.test"] == "nep"
    assert (metrics["train"], metrics["test"], metrics["dropped.leaked"]) == (4, 3, 1)
    assert metrics["external_test.duplicates_kept"] == 1
    rows = [json.loads(line) for line in (project / "data/split/test.jsonl").read_text().splitlines()]
    assert [r["commit"] for r in rows] == [r["commit"] for r in test] and len({r["id"] for r in rows}) == 3
    assert all(r["next"] == NEW and r["completion"] == NEW + "\n" and r["current"] == CURRENT for r in rows)
