"""Judges: the offline rules judge per language, the LLM judge via a local server, the judge stage."""

from __future__ import annotations

import json

import pytest

from nep.config.schema import Judge
from nep.core.prompts import build_prompt
from nep.evaluate.judges import judge_messages, rules_judgment, tree_sitter_parser
from nep.llm.verdicts import TooManyFailures
from nep.util.errors import NepError
from nep.util.jsonl import read_jsonl, write_jsonl
from stages import judge as judge_stage

CASES = [
    # (language, prediction, ground truth, judgment, reason)
    ("Python", "x = 1\n", "x = 1\n", 1, "exact"),
    ("Python", "x = 1   \n\n\ny = 2\n", "x = 1\ny = 2\n", 1, "whitespace"),
    ("Python", "x=f( a,b )  # call\n", "x = f(a, b)\n", 1, "syntax_tree"),
    ("Python", "if a:\n    b()\nc()\n", "if a:\n    b()\n    c()\n", 0, "different"),  # indentation matters
    ("Python", "x = (1\n", "x = 1\n", 0, "different"),  # does not parse
    ("Python", "x = 2\n", "x = 1\n", 0, "different"),
    ("Java", "class A { int f() { return 1; } }", "class A {\n  // one\n  int f() {\n    return 1;\n  }\n}\n", 1,
     "syntax_tree"),
    ("Java", "class A { int f() { return 1; } }", "class A { int f() { return 2; } }", 0, "different"),
    ("Go", "package p\nfunc f() int { return 1 }\n", "package p\n\n// f returns one.\nfunc f() int {\n\treturn 1\n}\n",
     1, "syntax_tree"),
    ("C", "int f(void){return 1;}", "int f(void) { /* one */ return 1; }", 1, "syntax_tree"),
    ("C++", "int f(){return 1;}", "int f() { return 1; } // one", 1, "syntax_tree"),
    ("C++", "int f(){return 1;}", "int g() { return 1; }", 0, "different"),
    ("JavaScript", "const a=[1,2];", "const a = [1, 2]; // two", 1, "syntax_tree"),
    ("JavaScript", "const a = 'x';", "const a = 'y';", 0, "different"),
    ("TypeScript", "let a:number=1", "let a: number = 1;", 0, "different"),  # the `;` is a token
    ("TypeScript", "let a:number=1;", "let a: number = 1; /* c */", 1, "syntax_tree"),
    ("Haskell", "f = 1", "f  =  1", 1, "whitespace"),
    ("Brainfuck", "+-", "-+", 0, "different"),  # no parser: never a false yes
]


@pytest.mark.parametrize("language, output, truth, judgment, reason", CASES)
def test_rules_judge(language, output, truth, judgment, reason):
    assert rules_judgment(output, truth, language) == (judgment, reason)


def test_rules_judge_unextracted_is_no_and_grammars_are_installed():
    assert rules_judgment("", "", "Python", extracted=False) == (0, "not_extracted")
    for language in ("Java", "Go", "C", "C++", "JavaScript", "TypeScript"):
        assert tree_sitter_parser(language) is not None, language


ORIGINAL = "".join(f"v{i} = {i}\n" for i in range(6))
CURRENT = ORIGINAL + "w = v1 + v2\n"
TRUTH = CURRENT + "print(w)\n"


def generation(i: int, output: str, *, extracted: bool = True) -> dict:
    return {"id": f"ex{i}", "prompt": build_prompt(ORIGINAL, CURRENT, path="calc.py"), "output": output,
            "ground_truth": TRUTH, "language": "Python", "latency_s": 0.1, "output_tokens": 3,
            "raw_output": output, "extracted": extracted}


def test_judge_stage_rules(tmp_path):
    records = [generation(0, TRUTH), generation(1, CURRENT + "print( w )  # show\n"), {"id": "broken", "prompt": "p"},
               generation(2, CURRENT), generation(3, "", extracted=False)]
    write_jsonl(tmp_path / "gen.jsonl", records)
    metrics = judge_stage.run(Judge(backend="rules"), predictor="p", input_path=tmp_path / "gen.jsonl",
                              output_path=tmp_path / "j.jsonl", metrics_path=tmp_path / "m.json",
                              timing_path=tmp_path / "t.json")
    out = list(read_jsonl(tmp_path / "j.jsonl"))
    assert [(j["id"], j["judgment"], j["reason"].split(":")[0]) for j in out] == [
        ("ex0", 1, "exact"), ("ex1", 1, "syntax_tree"), ("broken", None, "invalid generation record"),
        ("ex2", 0, "different"), ("ex3", 0, "not_extracted")]
    assert metrics["yes"] == 2 and metrics["no"] == 2 and metrics["null"] == 1 and metrics["yes_rate"] == 0.5
    assert metrics["reason.exact"] == 1 and metrics["reason.invalid_generation_record"] == 1
    assert json.loads((tmp_path / "m.json").read_text()) == metrics


def test_judge_stage_joins_by_id_and_refuses_duplicate_ids(tmp_path):
    records = [{"prompt": "no id"}, generation(0, TRUTH), {"id": "ex9", "output": 3}, generation(1, CURRENT)]
    write_jsonl(tmp_path / "gen.jsonl", records)
    files = dict(predictor="p", input_path=tmp_path / "gen.jsonl", output_path=tmp_path / "j.jsonl",
                 metrics_path=tmp_path / "m.json", timing_path=tmp_path / "t.json")
    judge_stage.run(Judge(backend="rules"), **files)
    assert [(j["id"], j["judgment"]) for j in read_jsonl(tmp_path / "j.jsonl")] == [
        (None, None), ("ex0", 1), ("ex9", None), ("ex1", 0)]
    write_jsonl(tmp_path / "gen.jsonl", [generation(0, TRUTH), generation(0, CURRENT)])
    with pytest.raises(NepError, match=r"gen.jsonl: duplicate generation ids \['ex0'\]"):
        judge_stage.run(Judge(backend="rules"), **files)


def test_llm_judge_prompt():
    messages = judge_messages(generation(0, CURRENT + "print(v1)\n"))
    user = messages[-1]["content"]
    assert "+w = v1 + v2" in user  # the edit history
    real, predicted = user.split("The real next edit")[1].split("The predicted next edit")
    assert "+print(w)" in real and "+print(v1)" in predicted and "Answer yes or no." in predicted


def test_judge_stage_llm(tmp_path, fake_openai, monkeypatch):
    monkeypatch.setenv("NEP_TEST_KEY", "sk-judge-secret")
    records = [generation(0, TRUTH), generation(1, "", extracted=False),
               generation(2, CURRENT + "print(w)  # [[answer:Yes, it is.]]\n"),
               generation(3, CURRENT + "del w  # [[answer:no]]\n"),
               generation(4, CURRENT + "w = 0  # [[answer:hmm]]\n"),
               generation(5, CURRENT + "x()  # [[fault:*500]]\n")]
    write_jsonl(tmp_path / "gen.jsonl", records)
    params = dict(predictor="p", input_path=tmp_path / "gen.jsonl", output_path=tmp_path / "j.jsonl",
                  metrics_path=tmp_path / "m.json", timing_path=tmp_path / "t.json")
    cfg = dict(backend="openai", base_url=fake_openai.url, model="judge-m", api_key_env="NEP_TEST_KEY",
               max_attempts=2, timeout_s=5, shortcut_exact=True, prices={"judge-m": {"input": 1.0, "output": 1.0}})
    with pytest.raises(TooManyFailures, match="2 of 6 judgments failed"):
        judge_stage.run(Judge(**{**cfg, "max_failure_rate": 0.1}), **params)
    # written before failing, so the reasons can be read
    out = list(read_jsonl(tmp_path / "j.jsonl"))
    assert [j["judgment"] for j in out] == [1, 0, 1, 0, None, None]
    assert out[0]["reason"] == "exact" and out[1]["reason"] == "not_extracted" and out[2]["reason"] == "llm: yes"
    assert [j["answer"] for j in out][:4] == [None, None, "Yes, it is.", "no"]
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["reason.exact"] + metrics["reason.not_extracted"] == 2  # decided without a request
    assert metrics["llm.requests"] == 4 and metrics["reason.unparseable"] == 1
    assert metrics["llm.failed.server_error"] == 1 and metrics["llm.cost_usd"] > 0
    assert fake_openai.requests == 3 + 2
    timing = json.loads((tmp_path / "t.json").read_text())  # measured, apart from the metrics
    assert timing["llm.wall_time_s"] > 0 and not any("time" in k for k in metrics)

    fake_openai.reset_counts()
    metrics = judge_stage.run(Judge(**{**cfg, "max_failure_rate": 0.5}), **params)
    # the failed request and the answer that was not yes/no ("hmm", never cached) are asked again
    assert fake_openai.requests == 1 + 2 and metrics["llm.cache_hits"] == 2
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert b"sk-judge-secret" not in path.read_bytes(), path
