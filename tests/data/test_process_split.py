"""The process stage (examples, drops) and the split strategies (no leakage, determinism)."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from nep.core.edits import current_version
from nep.core.examples import build_examples
from nep.core.prompts import example_id, parse_prompt
from nep.data.split import split_examples
from nep.util.errors import NepError

OLD = "".join(f"v{i} = {i}\n" for i in range(20))
NEW = OLD.replace("v3 = 3\n", "v3 = 3\nw = 1\n").replace("v9 = 9\n", "v9 = 9\nz = w\n")


def labeled(label, **changes) -> dict:
    r = {"commit": "abc", "old_file": "a.py", "new_file": "b.py", "old_contents": OLD, "new_contents": NEW,
         "subject": "s", "message": "m", "lang": "Python", "repos": "r", "timestamp": 10, "label": label,
         "label_reason": "x"}
    r.update(changes)
    return r


def test_process_builds_examples_and_counts_drops():
    drops: Counter = Counter()
    rows = [labeled(1), labeled(0), labeled(None), {k: v for k, v in labeled(1).items() if k != "label"},
            labeled(1, new_contents=OLD), labeled(1, new_contents=OLD + "tail = 1\n"), labeled(1),
            labeled(1, old_contents=None)]
    examples = list(build_examples(rows, drops, context_lines=0))
    assert drops == Counter({"not_relevant": 1, "label_null": 1, "missing_label": 1, "no_chunk": 1,
                             "no_edit_history": 1, "duplicate": 1, "missing_old_contents": 1})
    [e] = examples
    assert e["id"] == example_id("r", "abc", "a.py", "b.py")
    assert e["path"] == e["new_file"] == "b.py" and e["old_file"] == "a.py"
    assert e["language"] == "Python" and e["timestamp"] == 10 and e["repos"] == "r" and e["commit"] == "abc"
    assert e["current"] == current_version(OLD, NEW) and e["next"] == NEW and e["original"] == OLD
    assert e["text"] == e["prompt"] + e["completion"] and e["completion"] == NEW + "\n"  # + the template newline
    assert parse_prompt(e["prompt"])["current"] == e["current"]


def test_process_cuts_files_to_the_edit_window():
    [e] = build_examples([labeled(1)], Counter(), context_lines=2)
    # chunks after lines v3 and v9: the window is v2..v11 (two unchanged lines each side)
    assert e["original"] == "".join(f"v{i} = {i}\n" for i in range(2, 12))
    assert e["next"] == e["original"].replace("v3 = 3\n", "v3 = 3\nw = 1\n").replace("v9 = 9\n", "v9 = 9\nz = w\n")
    assert e["current"] == current_version(e["original"], e["next"])
    [whole] = build_examples([labeled(1)], Counter(), context_lines=0)
    assert whole["original"] == OLD and whole["next"] == NEW


@pytest.mark.parametrize(("answer", "expected"), [
    ("whole", {}),  # the paper's: the counts as they were
    ("blocks", {"format.blocks.writable": 1}),
    ("region", {"format.region.writable": 0, "format.region.unwritable.edit_outside_region": 1}),
])
def test_process_counts_what_the_answer_format_cannot_write(tmp_path, answer, expected):
    from nep.config.schema import section
    from nep.util.jsonl import read_jsonl, write_jsonl
    from stages.process import run

    write_jsonl(tmp_path / "in.jsonl", [labeled(1)])
    cfg = section("process", {"context_lines": 0, "format": {"answer": answer, "region_lines": 1}})
    metrics = run(cfg, input_path=tmp_path / "in.jsonl", output_path=tmp_path / "out.jsonl",
                  metrics_path=tmp_path / "m.json")
    assert {k: v for k, v in metrics.items() if k.startswith("format.")} == expected
    assert metrics["examples_out"] == 1 and len(list(read_jsonl(tmp_path / "out.jsonl"))) == 1  # examples kept


def examples(repos: int, commits: int, files: int = 2) -> list[dict]:
    return [
        {"id": f"{r}-{c}-{f}", "repos": f"repo{r}", "commit": f"{r}c{c}", "timestamp": 1000 + c,
         "prompt": "p", "completion": "c"}
        for r in range(repos) for c in range(commits) for f in range(files)
    ]


def test_repo_split_keeps_each_repository_on_one_side():
    data = examples(repos=6, commits=5)
    split = split_examples(data, strategy="auto", test_fraction=0.3, seed=1)
    assert split.strategy == "repo"
    assert not {e["repos"] for e in split.train} & {e["repos"] for e in split.test}
    assert len(split.train) + len(split.test) == len(data) and split.test
    again = split_examples(data, strategy="repo", test_fraction=0.3, seed=1)
    assert again.test == split.test  # deterministic under a seed
    other_seeds = {tuple(sorted({e["repos"] for e in split_examples(data, strategy="repo", test_fraction=0.2, seed=s).test}))
                   for s in range(8)}
    assert len(other_seeds) > 1


def test_time_split_sends_newest_commits_to_test_and_keeps_commits_whole():
    data = examples(repos=1, commits=10, files=3)
    split = split_examples(data, strategy="auto", test_fraction=0.2, seed=0)
    assert split.strategy == "time"
    assert {e["commit"] for e in split.test} == {"0c9", "0c8"}
    assert max(e["timestamp"] for e in split.train) < min(e["timestamp"] for e in split.test)
    assert not {e["commit"] for e in split.train} & {e["commit"] for e in split.test}


def test_time_split_without_timestamps_is_seeded():
    data = [{**e, "timestamp": None} for e in examples(repos=1, commits=10)]
    a = split_examples(data, strategy="time", test_fraction=0.2, seed=3)
    assert a.test == split_examples(data, strategy="time", test_fraction=0.2, seed=3).test
    assert not {e["commit"] for e in a.train} & {e["commit"] for e in a.test}


def test_external_split_removes_leaking_training_examples():
    data = examples(repos=2, commits=4)
    external = [e for e in data if e["commit"] == "0c1"][:1]
    split = split_examples(data, strategy="external", test_fraction=0.2, seed=0, external=external)
    assert split.test == external and split.leaked == 2
    with pytest.raises(NepError):
        split_examples(data, strategy="external", test_fraction=0.2, seed=0, external=[])
    with pytest.raises(NepError):
        split_examples(data, strategy="random", test_fraction=0.2, seed=0)


SPLIT_PARAMS = {"strategy": "auto", "test_fraction": 0.2, "seed": 42, "external_test": "", "external_train": "",
                "external_revision": "main"}


def test_split_stage_errors_and_metrics(tmp_path):
    from nep.config.schema import Split
    from stages.split import run

    src = tmp_path / "examples.jsonl"
    src.write_text("")
    kwargs = {"input_path": src, "train_path": tmp_path / "train.jsonl", "test_path": tmp_path / "test.jsonl",
              "metrics_path": tmp_path / "split.json"}
    with pytest.raises(NepError, match="shallow clone"):
        run(Split(**SPLIT_PARAMS), **kwargs)
    src.write_text("".join(json.dumps(e) + "\n" for e in examples(repos=1, commits=1)))
    with pytest.raises(NepError, match="test set empty"):
        run(Split(**SPLIT_PARAMS), **kwargs)
    src.write_text("".join(json.dumps(e) + "\n" for e in examples(repos=3, commits=3)) + "{bad\n")
    metrics = run(Split(**{**SPLIT_PARAMS, "strategy": "repo", "test_fraction": 0.3, "seed": 0}), **kwargs)
    assert metrics["train"] + metrics["test"] == 18 and metrics["dropped.malformed_json"] == 1
    assert metrics["repos.train"] + metrics["repos.test"] == 3


def test_windows_of_one_file_become_examples_and_never_straddle_the_time_split():
    from nep.data.filter import filter_records, paper_filter

    base = "".join(f"v{i} = {i}\n" for i in range(120))

    def edited(tag: str, at: list[int]) -> str:
        lines = base.splitlines(keepends=True)
        for i in sorted(at, reverse=True):
            lines.insert(i, f"{tag}_{i} = {i}\n")
        return "".join(lines)

    records = []
    for t, commit in enumerate(["c1", "c2", "c3", "c4"]):  # four release transitions of two files
        for path in ["a.py", "b.py"]:
            records.append({**labeled(1), "commit": commit, "old_file": path, "new_file": path, "timestamp": t,
                            "old_contents": base, "new_contents": edited(f"{commit}{path[0]}", [10, 14, 80, 84])})
    config = paper_filter(max_chars=0, max_tokens=0, edit_types=["add", "delete", "replace"], max_window_lines=30,
                          windows="clusters")
    kept = filter_records(records, config).kept
    drops: Counter = Counter()
    examples = list(build_examples(kept, drops, context_lines=2))
    assert len(examples) == 16 and not drops  # two windows per file and transition
    assert len({e["id"] for e in examples}) == 16
    split = split_examples(examples, strategy="time", test_fraction=0.4, seed=0)
    train = {(e["path"], e["commit"]) for e in split.train}
    test = {(e["path"], e["commit"]) for e in split.test}
    assert train and test and not train & test  # no test (path, transition) in training
    assert {c for _, c in test} == {"c4", "c3"} and len(split.test) == 8


def test_split_caps_each_side_with_a_seeded_sample(tmp_path):
    from nep.config.schema import Split as SplitParams
    from nep.data.split import split_dataset

    path = tmp_path / "examples.jsonl"
    rows = [{"id": f"e{i}", "repos": "r", "commit": f"c{i // 4}", "timestamp": i // 4, "prompt": "p",
             "completion": "c", "path": f"f{i % 4}.py"} for i in range(40)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    full, metrics = split_dataset(SplitParams(strategy="time", test_fraction=0.3), examples_path=path)
    assert "sampled_out.train" not in metrics
    capped, metrics = split_dataset(SplitParams(strategy="time", test_fraction=0.3, max_train=5, max_test=3),
                                    examples_path=path)
    assert (metrics["train"], metrics["test"]) == (5, 3)
    assert metrics["sampled_out.train"] == len(full.train) - 5 and metrics["sampled_out.test"] == len(full.test) - 3
    ids = [e["id"] for e in full.train]
    assert [e["id"] for e in capped.train] == sorted((e["id"] for e in capped.train), key=ids.index)
    assert {e["commit"] for e in capped.test} <= {e["commit"] for e in full.test}
    again, _ = split_dataset(SplitParams(strategy="time", test_fraction=0.3, max_train=5, max_test=3), examples_path=path)
    assert again.train == capped.train and again.test == capped.test


def test_repeat_share_draws_that_share_of_the_training_sample_from_examples_that_repeat_their_history(tmp_path):
    from nep.config.schema import Split as SplitParams
    from nep.data.split import repeats_history, split_dataset

    original, current = "a = foo(1)\nb = 2\nc = foo(3)\n", "a = bar(1)\nb = 2\nc = foo(3)\n"
    repeat = "a = bar(1)\nb = 2\nc = bar(3)\n"  # the history's foo → bar, once more
    other = "a = bar(1)\nb = 5\nc = foo(3)\n"  # an unrelated change
    assert repeats_history({"original": original, "current": current, "next": repeat})
    assert not repeats_history({"original": original, "current": current, "next": other})
    assert not repeats_history({"original": current, "current": current, "next": repeat})  # no history
    rows = [{"id": f"e{i}", "repos": "r", "commit": f"c{i // 4}", "timestamp": i // 4, "prompt": "p",
             "completion": "c", "path": f"f{i % 4}.py", "original": original, "current": current,
             "next": repeat if i % 5 == 0 else other} for i in range(60)]
    path = tmp_path / "examples.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))

    def split(**params):
        return split_dataset(SplitParams(strategy="time", test_fraction=0.3, max_test=6, **params), examples_path=path)

    plain, plain_metrics = split(max_train=10)
    chosen, metrics = split(max_train=10, repeat_share=0.6)
    assert "train.repeats_history" not in plain_metrics
    assert metrics["train"] == 10 and metrics["train.repeats_history"] == 6  # of the training side's 8 that repeat
    assert sum(map(repeats_history, chosen.train)) == 6 and sum(map(repeats_history, plain.train)) < 6
    assert chosen.test == plain.test  # the test side is never selected this way
    train_ids = [r["id"] for r in rows if r["timestamp"] < 10]
    assert [e["id"] for e in chosen.train] == sorted((e["id"] for e in chosen.train), key=train_ids.index)
    assert split(max_train=10, repeat_share=0.6)[0].train == chosen.train  # seeded

    with pytest.raises(NepError, match=r"split.repeat_share 1.0 of split.max_train 10 wants 10 .* has 8"):
        split(max_train=10, repeat_share=1.0)
    from nep.config.schema import section

    with pytest.raises(NepError, match=r"split: repeat_share 0.5 is a share of the training sample: set split.max_train"):
        section("split", {"repeat_share": 0.5})  # refused by `nep config` and every stage, before ingest
    with pytest.raises(NepError, match="training side has 40 examples, not more than split.max_train 40"):
        split(max_train=40, repeat_share=0.5)
