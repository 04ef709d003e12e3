"""Issue 31 item 1: an answer that cannot be used (not yes/no, empty, a refusal) is never cached, a
cached one is re-validated on read, and a run after the endpoint recovers asks again only what
failed. Label and judge share the code (nep.llm.verdicts.LLMVerdicts), so both are run here
against the local fake server answering 200 with text that is not yes/no, then recovering."""

from __future__ import annotations

import sqlite3

import pytest
from conftest import two_chunk_commit

from nep.config.schema import Judge, Label
from nep.evaluate.judges import JUDGES
from nep.llm.cache import CachedBackend, ResponseCache, cache_path
from nep.llm.chat import ChatRequest, ChatResult
from nep.llm.verdicts import TooManyFailures, build
from nep.util.jsonl import read_jsonl, write_jsonl
from stages import label as label_stage

OVERLOADED = "Upstream overloaded, please retry later."


def chat(server, **extra) -> dict:
    return {"backend": "openai", "base_url": server.url, "model": "fake-model", "api_key_env": "",
            "concurrency": 4, "timeout_s": 5, "max_attempts": 1, "max_failure_rate": 0.0, **extra}


def test_the_label_stage_heals_after_the_endpoint_stops_answering_nonsense(tmp_path, fake_openai):
    """The reproduction as written: 19 labels answered 200 "Upstream overloaded..." fail the stage;
    once the server answers yes/no again, the same command succeeds without touching the cache."""
    records = [two_chunk_commit(i, "[[answer:no]]" if i % 5 == 0 else "") for i in range(19)]
    write_jsonl(tmp_path / "in.jsonl", records)
    paths = dict(input_path=tmp_path / "in.jsonl", output_path=tmp_path / "out.jsonl",
                 metrics_path=tmp_path / "m.json", timing_path=tmp_path / "t.json")
    fake_openai.default_answer = OVERLOADED
    with pytest.raises(TooManyFailures, match=r"15 of 19 labels failed \(unparseable: 15\)"):
        label_stage.run(Label(**chat(fake_openai)), **paths)
    with sqlite3.connect(cache_path()) as db:
        assert db.execute("SELECT COUNT(*) FROM responses").fetchone()[0] == 4  # the four "no" answers only
        assert not db.execute("SELECT COUNT(*) FROM responses WHERE text = ?", (OVERLOADED,)).fetchone()[0]

    fake_openai.default_answer = "yes"  # the endpoint recovers
    fake_openai.reset_counts()
    metrics = label_stage.run(Label(**chat(fake_openai)), **paths)
    assert fake_openai.requests == 15  # exactly the failed ones are asked again
    assert metrics["llm.cache_hits"] == 4 and metrics["null"] == 0
    assert [r["label"] for r in read_jsonl(tmp_path / "out.jsonl")] == [0 if i % 5 == 0 else 1 for i in range(19)]


def test_the_llm_judge_shares_it(fake_openai):
    from nep.core.prompts import build_prompt

    prompt = build_prompt("x = 0\n", "x = 0\ny = 0\n", path="a.py")
    judge_input = [{"id": f"e{i}", "output": f"x = {i}\n", "ground_truth": "z = 0\n", "extracted": True,
                    "language": "Python", "prompt": prompt} for i in range(3)]
    fake_openai.default_answer = "I cannot help with that."  # a refusal is not an answer
    judge = build(JUDGES, Judge(**chat(fake_openai, max_failure_rate=1.0)))
    assert [v.tag for v in judge.verdicts(judge_input)] == ["unparseable"] * 3
    fake_openai.default_answer = "No."
    fake_openai.reset_counts()
    judge = build(JUDGES, Judge(**chat(fake_openai)))
    assert [v.value for v in judge.verdicts(judge_input)] == [0, 0, 0] and fake_openai.requests == 3


def test_a_cached_answer_is_validated_on_read(tmp_path):
    """An unusable answer already in the cache (written by an older nep) is asked again, and the
    good answer replaces it."""

    class Backend:
        accounting = __import__("nep.llm.accounting", fromlist=["Accounting"]).Accounting()
        sent: list[str] = []

        def identity(self, request):
            return {"messages": request.messages}

        def complete_many(self, requests):
            for r in requests:
                self.sent.append(r.id)
                yield ChatResult(r.id, "yes", None, "", 1, 1)

    path = tmp_path / "cache.sqlite"
    cached = CachedBackend(Backend(), path, accept=lambda text: text in ("yes", "no"))
    requests = [ChatRequest(id=str(i), messages=[{"role": "user", "content": f"q{i}"}]) for i in range(2)]
    store = ResponseCache(path)
    store.put(cached.key(requests[0]), ChatResult("0", OVERLOADED))
    store.put(cached.key(requests[1]), ChatResult("1", "no"))
    store.close()
    results = {r.id: r for r in cached.complete_many(requests)}
    assert cached.backend.sent == ["0"] and results["0"].text == "yes" and results["1"].cached
    assert ResponseCache(path).get(cached.key(requests[0]))[0] == "yes"
