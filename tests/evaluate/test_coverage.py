"""How sure: headline metrics on the surest answers, the risk–coverage curve, abstaining below
`evaluate.min_confidence` (no suggestion, scored as the current version), and the report's section."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pipeline.test_evaluate_stage import CURRENT, NEXT, OTHER, generation, judged, write_predictor

from nep.evaluate.coverage import abstain, covered, ranked
from nep.evaluate.coverage_report import coverage_markdown, coverage_section
from nep.evaluate.evaluation import evaluate
from nep.util import paths
from nep.util.errors import NepError


def sure(rid: str, output: str, logprob: float | None) -> dict:
    record = generation(rid, output)
    return record if logprob is None else {**record, "logprob": logprob}


@pytest.fixture
def confident(tmp_path: Path, monkeypatch) -> Path:
    """Right where it is sure (a, b), wrong where it is not (c, d); e has no confidence."""
    monkeypatch.chdir(tmp_path)
    rows = [sure("a", NEXT, -0.1), sure("b", NEXT, -0.2), sure("c", OTHER, -1.5), sure("d", OTHER, -2.0),
            sure("e", OTHER, None)]
    write_predictor(tmp_path, "model", rows, judged(a=1, b=1, c=0, d=0, e=0))
    write_predictor(tmp_path, "identity", [generation(i, CURRENT) for i in "abcde"], judged(**dict.fromkeys("abcde", 0)))
    return tmp_path


def run(min_confidence: dict[str, float] | None = None):
    inputs = {name: (paths.generations(name), paths.judgments(name)) for name in ("model", "identity")}
    return evaluate(inputs, reference="", context_lines=3, bootstrap_samples=100, seed=0, min_confidence=min_confidence)


def test_ranking_and_shares():
    assert ranked(["x", "y", "z", "w"], {"x": -1.0, "y": None, "z": -0.5, "w": -0.5}) == [3, 2, 0, 1]
    assert [covered(5, c) for c in (1.0, 0.8, 0.5, 0.2)] == [5, 4, 3, 1]
    assert covered(0, 0.5) == 0


def test_metrics_on_the_surest_answers(confident: Path):
    ev = run()
    rows = {(r["predictor"], r["coverage"]): r for r in ev.coverage_rows}
    assert [r["coverage"] for r in ev.coverage_rows if r["predictor"] == "model"] == [1.0, 0.8, 0.5, 0.2]
    assert rows["model", 1.0]["exact_match"] == pytest.approx(0.4) and rows["model", 1.0]["n"] == 5
    assert rows["model", 0.5]["n"] == 3 and rows["model", 0.5]["exact_match"] == pytest.approx(2 / 3)
    assert rows["model", 0.2]["exact_match"] == 1.0 and rows["model", 0.2]["min_logprob"] == -0.1
    assert ("identity", 0.5) not in rows and rows["identity", 1.0]["exact_match"] == 0.0  # no confidences
    assert ev.details["model.coverage_50.exact_match"] == pytest.approx(2 / 3)
    assert ev.details["model.coverage_50.n"] == 3 and "model.no_suggestion" not in ev.details
    curve = [(r["coverage"], r["risk"]) for r in ev.risk_rows if r["predictor"] == "model"]
    assert curve == [(0.2, 0.0), (0.4, 0.0), (0.6, pytest.approx(1 / 3)), (0.8, 0.5), (1.0, 0.6)]
    assert not [r for r in ev.risk_rows if r["predictor"] == "identity"]
    assert run().coverage_rows == ev.coverage_rows  # same inputs, same numbers


def test_unsure_answers_become_no_suggestion_scored_as_the_current_version(confident: Path):
    ev = run({"model": -1.0})
    assert ev.details["model.no_suggestion"] == 2  # c and d; e has no confidence: kept
    full = [r for r in ev.coverage_rows if r["coverage"] == 1.0]
    assert [r.get("no_suggestion") for r in full] == [2, None]
    table = coverage_markdown(ev.coverage_rows)
    assert table.splitlines()[0].endswith("| no suggestion |") and "| model | 100% | 5 |" in table
    assert table.splitlines()[2].endswith("| 2 |") and table.splitlines()[3].endswith("| – |")
    assert ev.headline["model.n"] == 5  # never dropped
    # c and d now score as identity does (no edit): wrong, and position_match like identity's
    both = run({"model": -1.0, "identity": -1.0})
    assert both.details["identity.no_suggestion"] == 0
    record, unsure = abstain(sure("c", OTHER, -1.5), -1.0, CURRENT)
    assert unsure and record["output"] == CURRENT and record["extraction"] == "no_suggestion" and record["extracted"]
    assert record["raw_output"] == CURRENT + "\n" and record["logprob"] == -1.5
    assert abstain(sure("a", NEXT, -0.1), -1.0, CURRENT) == (sure("a", NEXT, -0.1), False)
    with pytest.raises(NepError, match=r"evaluate\.min_confidence: 'nope'"):
        run({"nope": -1.0})


def test_report_section_draws_the_chart(confident: Path, tmp_path: Path):
    ev = run()
    (tmp_path / "cov.json").write_text(json.dumps({"rows": ev.coverage_rows}))
    (tmp_path / "risk.json").write_text(json.dumps({"rows": ev.risk_rows}))
    out = tmp_path / "report"
    out.mkdir()
    lines = coverage_section(out, "rules judge", coverage_path=tmp_path / "cov.json", risk_path=tmp_path / "risk.json")
    text = "\n".join(lines)
    assert "| model | 50% | 3 | -1.5000 | 0.667 |" in text and "rules judge" in text
    assert "![Risk–coverage](risk_coverage.svg)" in text
    svg = (out / "risk_coverage.svg").read_text()
    assert svg.startswith("<svg") and "Risk–coverage" in svg
    coverage_section(out, coverage_path=tmp_path / "cov.json", risk_path=tmp_path / "risk.json")
    assert (out / "risk_coverage.svg").read_text() == svg  # same bytes on rerun
    assert coverage_section(out, coverage_path=tmp_path / "none.json") == []
    assert coverage_markdown([]).count("\n") == 1
