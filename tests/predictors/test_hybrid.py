"""The `hybrid` predictor: propagate's next version where one of its rules applies, a model's
generations (a file) everywhere else, with how many answers each side gave in its metrics."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import make_example

from nep.predictors.base import Settings
from nep.predictors.kinds import check_predictor
from nep.predictors.propagate import propagate
from nep.predictors.runner import generate
from nep.util.jsonl import read_jsonl, write_jsonl

LINES = "".join(f"x{i} = {i}\n" for i in range(12))


def examples() -> list[dict]:
    renamed = LINES.replace("x3 = 3", "y3 = 3").replace("x4 = 4", "y4 = 4")
    exs = [
        # the history renamed x3 and x4, the next edit x5 and x6: propagate's line transformation applies
        make_example(LINES, renamed, renamed.replace("x5 = 5", "y5 = 5").replace("x6 = 6", "y6 = 6"), path="a.py"),
        # a one-off edit: no rule applies, propagate keeps the current version
        make_example(LINES, LINES.replace("x2 = 2\n", "x2 = 2  # two\n"), LINES.replace("x9 = 9", "x9 = 90"), path="b.py"),
        make_example(LINES, LINES.replace("x7 = 7\n", ""), LINES.replace("x7 = 7\n", "").replace("x1 = 1", "x1 = -1"),
                     path="c.py"),
    ]
    for n, ex in enumerate(exs):
        ex["id"] = f"ex{n}"
    return exs


def run(tmp_path: Path, name: str, entry: dict) -> tuple[list[dict], dict]:
    out = tmp_path / f"{name}.jsonl"
    metrics = generate(name, entry, Settings.of(max_new_tokens=16), test_path=tmp_path / "test.jsonl", out_path=out,
                       metrics_path=tmp_path / f"{name}.json", timing_path=tmp_path / f"{name}-t.json", progress=False)
    return list(read_jsonl(out)), metrics


@pytest.fixture
def test_set(tmp_path, monkeypatch) -> list[dict]:
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    exs = examples()
    write_jsonl(tmp_path / "test.jsonl", exs)
    return exs


def hybrid(path: Path) -> dict:
    return {"kind": "hybrid", "rule": "propagate", "path": str(path), "needs": str(path)}


def test_the_rule_answers_where_it_applies_and_the_model_elsewhere(tmp_path, test_set):
    exs = test_set
    model = tmp_path / "model.jsonl"
    rows = [
        {"id": "ex0", "output": "the model's answer where the rule applies\n"},  # not used
        {"id": "ex1", "output": exs[1]["next"]},  # the model is right where the rule has nothing
        {"id": "ex2", "output": "", "raw_output": "<<<<<<< ORIGINAL\nnope\n", "extracted": False,
         "extraction": "block_not_found"},
    ]
    model.write_text("".join(json.dumps(r) + "\n" for r in rows))
    records, metrics = run(tmp_path, "hybrid", hybrid(model))
    assert records[0]["output"] == exs[0]["next"]  # propagate's, not the model's row
    assert records[1]["output"] == exs[1]["next"] and records[1]["extracted"]
    # the model's answer that held no next version stays a miss, with its reason
    assert not records[2]["extracted"] and records[2]["extraction"] == "block_not_found"
    assert metrics["hybrid_source.rule"] == 1 and metrics["hybrid_source.model"] == 2
    # each record says which side answered it (and, for the rule, which of propagate's rules)
    assert [r["tags"]["hybrid_source"] for r in records] == ["rule", "model", "model"]
    assert records[0]["tags"]["propagate_rule"] == "transform"
    assert metrics["propagate_rule.transform"] == 1
    assert metrics["file.matched"] == 3


def test_over_identity_generations_it_is_propagate(tmp_path, test_set):
    """Run on the `identity` predictor's own generation records, the hybrid answers as propagate does."""
    identity, _ = run(tmp_path, "identity", {"kind": "identity", "needs": "test.jsonl"})
    records, _ = run(tmp_path, "hybrid", hybrid(tmp_path / "identity.jsonl"))
    expected = [propagate(ex["original"], ex["current"]).text for ex in test_set]
    assert [r["output"] for r in records] == expected
    assert expected[1:] == [r["output"] for r in identity[1:]] and expected[0] != identity[0]["output"]


def test_a_missing_model_file_and_an_unknown_rule_are_one_line_errors(tmp_path, test_set):
    from nep.util.errors import NepError

    with pytest.raises(NepError, match=r"generate\.predictors\.hybrid\.path: .*file not found"):
        run(tmp_path, "hybrid", hybrid(tmp_path / "none.jsonl"))
    with pytest.raises(ValueError, match=r"generate\.predictors\.h\.rule"):
        check_predictor("h", {**hybrid(tmp_path / "m.jsonl"), "rule": "lookup"})
    with pytest.raises(ValueError, match=r"generate\.predictors\.h\.path"):
        check_predictor("h", {"kind": "hybrid", "needs": "x"})
