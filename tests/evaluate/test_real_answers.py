"""Headline metrics on real answers of a real model: an answer that does not attempt the edit scores
(near) 0 on every one of them.

tests/evaluate/real_answers.jsonl holds 20 answers of SmolLM2-135M-Instruct from the `smollm2`
preset's run of 2026-12-03 (presets/smollm2.yaml with `finetune.epochs: 2`): 12 of the untrained base
model (the training prompt, greedy, the loop guard on) and 8 of the fine-tuned one, on test examples
of the CPython standard-library history (PSF License). Each line holds the test example and the
saved answer as nep.predictors.runner keeps it (raw output, tokens, stop tag).

What they show: the base model copies a few lines of the file and then loops (`#` over and over, or
a block of lines), and the fine-tuned one sometimes copies the file unchanged. Scored as files, the
looping answers "delete" every line they never reached, and when the true edit deletes lines near
the end of the window Zed's delta chrF gives that up to 0.9. An answer that did not end is therefore
no next version (extraction `incomplete`, nep.predictors.stop.INCOMPLETE).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nep.evaluate.judges import rules_judgment
from nep.evaluate.metrics import score_example
from nep.evaluate.protocol import scored_pair
from nep.predictors.runner import make_record
from nep.predictors.stop import INCOMPLETE

FIXTURE = Path(__file__).with_name("real_answers.jsonl")
ANSWERS = [json.loads(line) for line in FIXTURE.read_text(encoding="utf-8").splitlines()]


def scored(entry: dict, protocol: str = "next_version"):
    """The generation record of the saved answer, scored as evaluate scores it (rules judge)."""
    ex = entry["example"]
    record = make_record(ex, entry["answer"])
    truth, prediction, extracted = scored_pair(record, protocol)
    judgment, _ = rules_judgment(prediction, truth, ex["language"], extracted)
    return record, score_example(original=ex["original"], current=ex["current"], ground_truth=truth,
                                 prediction=prediction, extracted=extracted, judgment=judgment)


def kind(entry: dict) -> str:
    record, _ = scored(entry)
    if entry["answer"]["tags"].get("stop") in INCOMPLETE:
        return "incomplete"
    if not record["extracted"]:
        return "unextracted"
    return "copy" if record["output"] == entry["example"]["current"] else "attempt"


def headline(score) -> dict[str, float]:
    return {"exact_match": float(bool(score.exact_match)), "partial_match": float(bool(score.partial_match)),
            "position_match": float(bool(score.position_match)), "judge": float(score.judgment or 0),
            "delta_chrf": score.delta_chrf}


def test_the_fixture_holds_each_kind_of_real_answer():
    kinds = [kind(e) for e in ANSWERS]
    assert len(ANSWERS) == 20
    assert kinds.count("incomplete") >= 12 and kinds.count("copy") >= 3 and kinds.count("attempt") >= 2
    assert {e["predictor"] for e in ANSWERS} == {"base", "finetuned"}


@pytest.mark.parametrize("entry", [e for e in ANSWERS if kind(e) != "attempt"],
                         ids=lambda e: f"{e['predictor']}-{e['example']['path']}")
def test_an_answer_that_does_not_attempt_the_edit_scores_zero_on_every_headline_metric(entry):
    _, score = scored(entry)
    values = headline(score)
    assert values["delta_chrf"] < 0.05, values
    assert {k: v for k, v in values.items() if k != "delta_chrf"} == dict.fromkeys(
        ("exact_match", "partial_match", "position_match", "judge"), 0.0)


def test_an_unfinished_answer_is_not_a_next_version():
    incomplete = [e for e in ANSWERS if kind(e) == "incomplete"]
    for entry in incomplete:
        record, _ = scored(entry)
        assert (record["extracted"], record["extraction"], record["output"]) == (False, "incomplete", "")
        assert record["stop"] == entry["answer"]["tags"]["stop"] and record["raw_output"]
    # why: read as a file, a truncated loop is a deletion of the lines it never reached. The paper's
    # offline reading scores the raw text, and Zed's delta chrF rewards it where the truth deletes lines
    paper = [scored(e, "paper_offline")[1].delta_chrf for e in incomplete]
    assert max(paper) > 0.5
    smtplib = next(e for e in incomplete if e["example"]["path"] == "test/test_smtplib.py")
    assert scored(smtplib, "paper_offline")[1].delta_chrf > 0.5 and scored(smtplib)[1].delta_chrf == 0.0


def test_real_attempts_still_score():
    attempts = [scored(e)[1] for e in ANSWERS if kind(e) == "attempt"]
    assert attempts and all(s.delta_chrf > 0.3 for s in attempts)
