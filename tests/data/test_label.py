"""Offline labelers and the label stage."""

from __future__ import annotations

import json

import pytest

from nep.config.schema import section
from nep.data.label import LABELERS, AllLabeler, HeuristicLabeler, label_all, label_heuristic
from nep.llm.verdicts import build

BASE = "".join(f"row_{i} = {i}\n" for i in range(30))


def rec(new: str) -> dict:
    return {"commit": "c", "new_file": "f.py", "lang": "Python", "old_contents": BASE, "new_contents": new}


def insert(at: dict[int, str]) -> str:
    lines = BASE.splitlines(keepends=True)
    for i in sorted(at, reverse=True):
        lines.insert(i, at[i])
    return "".join(lines)


def test_heuristic_says_yes_when_the_last_chunk_shares_an_identifier():
    label, reason = label_heuristic(rec(insert({3: "timeout_ms = 50\n", 20: "wait(timeout_ms)\n"})))
    assert label == 1 and "timeout_ms" in reason


def test_heuristic_ignores_keywords_and_unrelated_names():
    label, _ = label_heuristic(rec(insert({3: "return alpha\n", 20: "return beta\n"})))
    assert label == 0
    label, reason = label_heuristic(rec(insert({3: "only_one = 1\n"})))
    assert label == 0 and "fewer than two" in reason


def test_all_and_unknown_labelers():
    assert label_all(rec(BASE))[0] == 1
    labeler = build(LABELERS, section("label", {"backend": "all", "model": "ignored", "max_failure_rate": 0.0}))
    assert isinstance(labeler, AllLabeler) and [v.value for v in labeler.verdicts([rec(BASE)] * 2)] == [1, 1]
    assert isinstance(build(LABELERS, section("label", {"backend": "heuristic"})), HeuristicLabeler)
    with pytest.raises(ValueError, match=r"label.backend: 'heurstic' is not allowed \(allowed: 'all', 'heuristic'"):
        build(LABELERS, section("label", {"backend": "heurstic"}))


def test_label_stage_counts(tmp_path):
    from nep.config.schema import Label
    from stages.label import run

    src = tmp_path / "in.jsonl"
    rows = [rec(insert({3: "a_b = 1\n", 9: "c_d = a_b\n"})), rec(insert({3: "a_b = 1\n", 9: "c_d = 2\n"}))]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{broken\n" + json.dumps({"lang": "C"}) + "\n")
    out = tmp_path / "out.jsonl"
    files = dict(input_path=src, output_path=out, metrics_path=tmp_path / "m.json", timing_path=tmp_path / "t.json")
    metrics = run(Label(backend="heuristic"), **files)
    assert metrics["yes"] == 1 and metrics["no"] == 1 and metrics["yes_rate"] == 0.5
    assert metrics["reason.shared_name"] == 1 and metrics["reason.no_shared_name"] == 1
    assert json.loads((tmp_path / "m.json").read_text()) == metrics
    assert set(json.loads((tmp_path / "t.json").read_text())) == {"wall_time_s"}
    assert metrics["records_in"] == 4 and metrics["dropped.malformed_json"] == 1
    assert metrics["dropped.missing_commit"] == 1
    labeled = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["label"] for r in labeled] == [1, 0] and all(r["label_reason"] for r in labeled)
    assert run(Label(backend="all"), **files)["yes"] == 2
