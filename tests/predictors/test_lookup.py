"""The `lookup` baseline: memorised one-line replacements from a tiny hand-made training split."""

from __future__ import annotations

import json

import pytest
from conftest import make_example

from nep.predictors.base import Settings
from nep.predictors.kinds import build_predictor, check_predictor
from nep.predictors.lookup import apply_lookup, build_table
from nep.util.errors import NepError

TRAIN = [
    # `print x` → `print(x)` twice, once to something else: the twice-seen one wins
    make_example("a = 1\n", "a = 1\nprint x\n", "a = 1\nprint(x)\n"),
    make_example("", "def f():\n    print x\n", "def f():\n    print(x)\n"),
    make_example("", "print x\n", "print(x, file=out)\n"),
    # a line inserted, not replaced: no one-line replacement to learn
    make_example("", "b = 2\n", "b = 2\nc = 3\n"),
]


def write(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return str(path)


def run(tmp_path, test):
    predictor = build_predictor("memo", {"kind": "lookup", "needs": "x", "train": write(tmp_path / "train.jsonl", TRAIN)})
    out = {}
    for group in predictor.predict(test, list(range(len(test))), Settings.of(batch_size=2)):
        out.update(group)
    return [out[i] for i in range(len(test))], predictor.report()


def test_lookup_applies_the_most_frequent_replacement_reindented(tmp_path):
    hit = make_example("", "class A:\n    def g(self):\n        print  x\n", "")
    answers, report = run(tmp_path, [hit])
    assert answers[0].raw_output == "class A:\n    def g(self):\n        print(x)\n"
    assert answers[0].tags == {"lookup": "hit"}
    assert report == {"lookup.replacements": 2, "lookup.train_examples": 4, "lookup.train_skipped": 0}


def test_lookup_without_a_match_answers_the_current_version(tmp_path):
    miss = make_example("", "c = 3\nb = 2\n", "")
    answers, _ = run(tmp_path, [miss])
    assert (answers[0].raw_output, answers[0].tags) == ("c = 3\nb = 2\n", {"lookup": "miss"})


def test_lookup_ties_go_to_the_earlier_line_then_the_smaller_text():
    table = build_table([make_example("", "x\ny\n", "x2\ny2\n"), make_example("", "y\n", "y1\n")])
    assert apply_lookup(table, "y\nx\n") == "y1\nx\n"  # y: y1 and y2 once each, x: x2 once
    assert apply_lookup(table, "z\n") is None


def test_lookup_names_its_option_when_the_training_file_is_missing(tmp_path):
    check_predictor("memo", {"kind": "lookup", "needs": "data/split/train.jsonl"})
    predictor = build_predictor("memo", {"kind": "lookup", "needs": "x", "train": str(tmp_path / "none.jsonl")})
    with pytest.raises(NepError, match=r"generate\.predictors\.memo\.train: .*none\.jsonl: file not found"):
        predictor.report()
