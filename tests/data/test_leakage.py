"""The split's leakage check (nep/data/leakage.py): planted duplicates of each kind are counted, a
clean split counts none, and a rate above `split.leakage.max_rate.<kind>` fails the stage."""

from __future__ import annotations

import json

import pytest

from nep.config.schema import Split as SplitParams
from nep.data.leakage import KINDS, check_limits, edit_lines, find_leakage
from nep.util.errors import NepError


def module(name: str, n: int = 30) -> str:
    """A distinct file: every line names `name`, so two modules share no token 5-gram."""
    return "".join(f"def {name}_{i}(x_{name}):\n    return x_{name} * {i} + {name}_{i + 1}\n" for i in range(n))


def example(id: str, current: str, next_version: str, commit: str = "c0") -> dict:
    return {"id": id, "repos": "r", "commit": commit, "path": f"{id}.py", "current": current,
            "next": next_version, "prompt": "p", "completion": next_version}


def clean_split() -> tuple[list[dict], list[dict]]:
    train = [example(f"train{k}", module(f"a{k}"), module(f"a{k}") + f"extra_a{k} = {k}\n") for k in range(4)]
    test = [example(f"test{k}", module(f"b{k}"), module(f"b{k}") + f"extra_b{k} = {k}\n", "c1") for k in range(4)]
    return train, test


def planted() -> tuple[list[dict], list[dict]]:
    """A clean split plus one test example of each kind, each matching a different training example."""
    train, test = clean_split()
    # the same next version as train0, reached from another current version (another edit, another window)
    test.append(example("dup_next", module("c0"), train[0]["next"], "c1"))
    # the same edit as train1 (one added line), in another file, indented differently
    test.append(example("dup_edit", module("c1"), module("c1") + "    extra_a1   =  1\n", "c1"))
    # train2's window with one line changed, and a different edit
    window = module("a2").replace("return x_a2 * 7 ", "return x_a2 * 70 ")
    test.append(example("dup_window", window, window + "other = 2\n", "c1"))
    return train, test


def test_edit_lines_are_the_changed_lines_with_whitespace_normalised():
    assert edit_lines("a = 1\nb = 2\n", "a = 1\n  b   =  3 \n\n") == ("-b = 2", "+b = 3")
    assert edit_lines("a\n", "a\n\n   \n") == ()  # only blank lines: no edit


def test_planted_duplicates_of_each_kind_are_counted():
    train, test = planted()
    leakage = find_leakage(train, test)
    assert {kind: [(t, s) for t, s, _ in leakage.found[kind]] for kind in KINDS} == {
        "next_version": [("dup_next", "train0")],
        "edit": [("dup_edit", "train1")],
        "window": [("dup_window", "train2")],
    }
    [(_, _, similarity)] = leakage.found["window"]
    assert 0.8 <= similarity < 1.0
    metrics = leakage.metrics()
    assert metrics["leakage.next_version"] == metrics["leakage.edit"] == metrics["leakage.window"] == 1
    assert metrics["leakage.any"] == 3 and metrics["leakage.window_rate"] == round(1 / 7, 4)
    lines = leakage.log_lines(3)
    assert "leakage window: 1 of 7 test examples have a near-copy window that training also has" in lines
    assert "  test dup_window ~ train train2 (similarity " + f"{similarity:.3f})" in lines
    assert find_leakage(train, test).found == leakage.found  # the same on a rerun


def test_a_clean_split_counts_zero_and_a_window_below_the_threshold_is_no_leak():
    train, test = clean_split()
    leakage = find_leakage(train, test)
    assert all(leakage.count(kind) == 0 for kind in KINDS) and leakage.metrics()["leakage.any"] == 0
    # half of train0's window and half new: similarity 0.33, below the default 0.8, above 0.3
    half = module("a0", 15) + module("z", 15)
    test.append(example("half", half, half + "q = 1\n", "c1"))
    assert find_leakage(train, test).count("window") == 0
    assert find_leakage(train, test, window_similarity=0.3).count("window") == 1


def test_every_strategy_is_checked_and_over_the_limit_the_stage_fails(tmp_path):
    from stages.split import run

    train, test = planted()
    for k, e in enumerate(train):
        e.update(commit=f"c{k}", timestamp=k)
    for e in test:
        e.update(commit="c9", timestamp=9)
    path = tmp_path / "examples.jsonl"
    path.write_text("".join(json.dumps(e) + "\n" for e in train + test))
    kwargs = {"input_path": path, "train_path": tmp_path / "train.jsonl", "test_path": tmp_path / "test.jsonl",
              "metrics_path": tmp_path / "split.json"}
    metrics = run(SplitParams(strategy="time", test_fraction=0.5), **kwargs)
    assert metrics["test"] == 7 and (metrics["leakage.next_version"], metrics["leakage.edit"], metrics["leakage.window"]) == (1, 1, 1)
    assert json.loads((tmp_path / "split.json").read_text())["leakage.any"] == 3
    # an external test set is checked the same way
    external = tmp_path / "external.jsonl"
    external.write_text("".join(json.dumps(e) + "\n" for e in test))
    ext = run(SplitParams(strategy="external", external_test=str(external)), **kwargs)
    assert (ext["leakage.edit"], ext["leakage.any"]) == (1, 3)

    limits = {"leakage": {"max_rate": {"edit": 0.1}}}
    with pytest.raises(NepError, match=r"^split.leakage.max_rate.edit is 0.1: 1 of 7 test examples \(14.3%\) have an edit"):
        run(SplitParams(strategy="time", test_fraction=0.5, **limits), **kwargs)
    run(SplitParams(strategy="time", test_fraction=0.5, leakage={"max_rate": {"edit": 0.15}}), **kwargs)


def test_check_limits_allows_a_rate_equal_to_the_limit():
    train, test = planted()
    leakage = find_leakage(train, test)
    check_limits(leakage, {"next_version": 1 / 7, "edit": 1 / 7, "window": 1 / 7})
    with pytest.raises(NepError, match="split.leakage.max_rate.window"):
        check_limits(leakage, {"next_version": 1.0, "edit": 1.0, "window": 0.0})
