"""LLM relevance labeling: the prompt, yes/no parsing, and labeling through a local server."""

from __future__ import annotations

import pytest

from nep.llm import TooManyFailures, parse_yes_no
from nep.relevance import EXAMPLES, SYSTEM, label_with_llm, relevance_messages


def commit(i: int, last_line: str = "") -> dict:
    old = "".join(f"line_{k} = {k}\n" for k in range(12))
    lines = old.splitlines(keepends=True)
    new = "".join(lines[:2] + [f"limit_{i} = {i}\n"] + lines[2:9] + [f"check(limit_{i})  {last_line}\n"] + lines[9:])
    return {"commit": f"c{i}", "old_file": "m.py", "new_file": "m.py", "old_contents": old, "new_contents": new,
            "subject": "s", "message": "m", "lang": "Python", "repos": "r"}


@pytest.mark.parametrize("text, expected", [
    ("yes", True), ("No", False), ("YES.", True), ("no!", False), ("**Yes**", True), ('"no"', False),
    ("```\nyes\n```", True), ("```text\nNo\n```", False), ("Yes, the final edit uses the new name.", True),
    ("The final edit is unrelated, so the answer is no.", False), ("Answer: **No**", False),
    ("I would say yes", True), ("  \n yes \n", True),
    ("Maybe", None), ("", None), (None, None), ("The edit is related to no earlier change, yes", None),
    ("nothing to say", None), ("yesterday", None), ("I cannot tell.", None),
])
def test_parse_yes_no(text, expected):
    assert parse_yes_no(text) is expected


def test_prompt_has_our_examples_and_the_record_diffs():
    messages = relevance_messages(commit(7))
    assert messages[0] == {"role": "system", "content": SYSTEM}
    answers = [m["content"] for m in messages if m["role"] == "assistant"]
    assert answers == [e[-1] for e in EXAMPLES] and "yes" in answers and "no" in answers
    final = messages[-1]["content"]
    assert messages[-1]["role"] == "user" and "File: m.py (Python)" in final
    history, last = final.split("Final edit")
    assert "+limit_7 = 7" in history and "check(limit_7)" not in history
    assert "+check(limit_7)" in last and final.rstrip().endswith("Answer yes or no.")


def test_labels_in_order_with_reasons(fake_openai, monkeypatch):
    monkeypatch.setenv("NEP_TEST_KEY", "k")
    answers = ["yes", "No.", "```\nyes\n```", "Maybe?", "Answer: no"]
    records = [commit(i, f"# [[answer:{a}]]") for i, a in enumerate(answers)]
    records.append(commit(9, "# [[fault:*503]]"))
    params = dict(base_url=fake_openai.url, model="m", api_key_env="NEP_TEST_KEY", max_attempts=2,
                  backoff_base_s=0.01, timeout_s=5, heuristic_param="ignored")
    metrics: dict = {}
    with pytest.raises(TooManyFailures, match=r"2 of 6 labels failed \((server_error: 1, unparseable_answer: 1|"
                                              r"unparseable_answer: 1, server_error: 1)\)"):
        out = []
        for r in label_with_llm(records, metrics=metrics, max_failure_rate=0.2, **params):
            out.append(r)
    assert [r["commit"] for r in out] == [r["commit"] for r in records]  # all, in input order
    assert [r["label"] for r in out] == [1, 0, 1, None, 0, None]
    assert out[0]["label_reason"] == "llm: yes" and "Maybe?" in out[3]["label_reason"]
    assert out[5]["label_reason"].startswith("llm failed: server_error: after 2 attempts: HTTP 503")
    assert all(r["old_contents"] == s["old_contents"] for r, s in zip(out, records))
    assert metrics["llm.unparseable"] == 1 and metrics["llm.failures.server_error"] == 1
    assert metrics["llm.requests_sent"] == 5 + 2

    fake_openai.reset_counts()
    again = list(label_with_llm(records, max_failure_rate=0.5, **params))  # under the limit: no error
    assert [r["label"] for r in again] == [1, 0, 1, None, 0, None]
    assert fake_openai.requests == 2  # only the failed request is sent again
