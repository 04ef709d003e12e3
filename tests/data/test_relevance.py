"""LLM relevance labeling: the prompt, yes/no parsing, and labeling through a local server."""

from __future__ import annotations

import pytest

from nep.config.schema import section
from nep.data.label import LABELERS
from nep.data.relevance import EXAMPLES, SYSTEM, LLMRelevance, relevance_messages
from nep.llm.answers import parse_yes_no
from nep.llm.verdicts import TooManyFailures, build


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
    params = dict(backend="openai", base_url=fake_openai.url, model="m", api_key_env="NEP_TEST_KEY",
                  max_attempts=2, timeout_s=5, max_failure_rate=0.2)
    labeler = build(LABELERS, section("label", params))
    assert isinstance(labeler, LLMRelevance)
    out = list(labeler.verdicts(records))
    assert [v.id for v in out] == [str(i) for i in range(6)]  # all, in input order
    assert [v.value for v in out] == [1, 0, 1, None, 0, None]
    assert out[0].reason == "llm: yes" and "Maybe?" in out[3].reason and out[3].tag == "unparseable"
    assert out[5].reason.startswith("llm failed: server_error: after 2 attempts: HTTP 503")
    assert labeler.metrics()["llm.failed.server_error"] == 1 and labeler.metrics()["llm.requests"] == 6
    assert labeler.metrics()["llm.retries"] == 1
    with pytest.raises(TooManyFailures, match=r"2 of 6 labels failed \(server_error: 1, unparseable: 1\)"):
        labeler.check()

    fake_openai.reset_counts()
    again = build(LABELERS, section("label", {**params, "max_failure_rate": 0.5}))
    assert [v.value for v in again.verdicts(records)] == [1, 0, 1, None, 0, None]
    again.check()  # under the limit: no error
    assert fake_openai.requests == 3  # the failed request (2 attempts) and the unparseable answer, never cached
