"""Latency and confidence per answer: the stats, the machine line, hf's first-token time and token
log-probabilities (checked against a forward pass), vLLM's and an OpenAI endpoint's log-probabilities,
and the runner's side file (measured times never in a record or a metric)."""

from __future__ import annotations

import json
import sqlite3
from types import SimpleNamespace

import pytest
from conftest import make_example
from fake_openai import FakeOpenAI
from predictors.test_predictors import examples, predict_all

from nep.predictors.base import Settings, mean_logprob
from nep.predictors.kinds import build_predictor
from nep.predictors.latency import answer_row, percentile, summary
from nep.predictors.runner import generate
from nep.predictors.vllm import answer_logprob, first_token_s
from nep.util.jsonl import read_jsonl, write_jsonl
from nep.util.machine import describe


def test_percentile_interpolates_between_ranks():
    assert percentile([], 50) is None
    assert percentile([3.0], 95) == 3.0
    assert percentile([4.0, 1.0, 3.0, 2.0], 50) == 2.5
    assert percentile([float(v) for v in range(1, 101)], 95) == pytest.approx(95.05)


def test_summary_counts_each_call_once_and_leaves_out_skips():
    rows = [answer_row({"id": str(i), "latency_s": 2.0, "batch": 2, "output_tokens": 10, "skipped": None}, False)
            for i in range(4)]  # two calls of two answers, 2 s each
    rows.append(answer_row({"id": "s", "latency_s": 0.0, "output_tokens": 0, "skipped": "prompt_too_long"}, False))
    row = summary(rows, where={"device": "cpu", "machine": "x", "batch_size": 2})
    assert row["answers_timed"] == 4 and row["latency_p50_s"] == row["latency_p95_s"] == 2.0
    assert row["s_per_answer"] == 1.0 and row["tokens_per_s"] == 10.0  # 40 tokens in 4 s of machine time
    assert row["ttft_p50_s"] is None and (row["device"], row["batch_size"]) == ("cpu", 2)


def test_machine_line_names_the_cpu_and_threads():
    line = describe("cpu", 3)
    assert line.endswith(", 3 threads") and len(line) > len(", 3 threads")
    assert describe("remote") == "remote"


def test_mean_logprob_rounds():
    assert mean_logprob([]) is None
    assert mean_logprob([-0.123456, -0.2]) == -0.1617


def test_hf_answers_carry_first_token_time_and_their_tokens_logprob(tiny_dir):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from nep.core.prompts import model_boundary

    exs = examples()[:3]
    predictor = build_predictor("tiny", {"kind": "hf", "model": str(tiny_dir), "device": "cpu"})
    preds = predict_all(predictor, exs, max_new_tokens=10, batch_size=3)
    assert all(p.batch == 3 and 0 < p.ttft_s <= p.latency_s for p in preds)
    assert len({p.latency_s for p in preds}) == 1  # one call: every answer comes back at its end
    again = predict_all(predictor, exs, max_new_tokens=10, batch_size=3)
    assert [p.logprob for p in again] == [p.logprob for p in preds]  # rounded: a rerun agrees
    # the first example alone, against a forward pass over its prompt and answer
    single = predict_all(predictor, exs[:1], max_new_tokens=10, batch_size=1)[0]
    tokenizer = AutoTokenizer.from_pretrained(tiny_dir)
    model = AutoModelForCausalLM.from_pretrained(tiny_dir).eval()
    head, _ = model_boundary(exs[0]["prompt"])
    prompt = tokenizer(head)["input_ids"]
    generated = model.generate(torch.tensor([prompt]), max_new_tokens=single.output_tokens, do_sample=False,
                               pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)[0, len(prompt):].tolist()
    with torch.inference_mode():
        logits = model(torch.tensor([prompt + generated])).logits[0, len(prompt) - 1 : -1]
    chosen = torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(generated)[:, None])[:, 0]
    made = single.output_tokens + (single.tags["stop"] == "eos")
    assert single.logprob == pytest.approx(chosen[:made].mean().item(), abs=2e-4)
    assert single.logprob <= 0


def test_vllm_completion_logprob_and_first_token_time():
    step = lambda token, value: {token: SimpleNamespace(logprob=value)}  # noqa: E731
    full = SimpleNamespace(token_ids=[5, 7], logprobs=[step(5, -0.5), step(7, -0.25)], cumulative_logprob=-9.0)
    assert answer_logprob(full) == -0.375
    assert answer_logprob(SimpleNamespace(token_ids=[5, 7], logprobs=None, cumulative_logprob=-1.0)) == -0.5
    assert answer_logprob(SimpleNamespace(token_ids=[], logprobs=None, cumulative_logprob=None)) is None
    timed = SimpleNamespace(metrics=SimpleNamespace(arrival_time=10.0, first_token_time=10.25))
    assert first_token_s(timed) == 0.25 and first_token_s(SimpleNamespace(metrics=None)) is None


def test_openai_logprobs_from_the_endpoint_and_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    answer = "<next_version>\nx = 2\n</next_version>"
    sure = make_example(f"# [[answer:{answer}]] [[logprob:-0.125]]\nx = 1\n", f"# [[answer:{answer}]] [[logprob:-0.125]]\nx = 1\ny = 1\n", "x\n")
    plain = make_example("p = 1\n", "p = 1\nq = 1\n", "p\n")
    entry = {"kind": "openai", "model": "m", "api_key_env": "", "max_attempts": 1, "logprobs": True}
    with FakeOpenAI(default_answer="no tags here") as server:
        preds = predict_all(build_predictor("api", {**entry, "base_url": server.url}), [sure, plain], 64)
        assert [p.logprob for p in preds] == [-0.125, -0.5]
        assert all(p.latency_s > 0 and p.ttft_s is None for p in preds)
        cached = predict_all(build_predictor("api", {**entry, "base_url": server.url}), [sure, plain], 64)
        assert [p.logprob for p in cached] == [-0.125, -0.5] and server.requests == 2  # from the cache
        without = predict_all(build_predictor("api", {**entry, "base_url": server.url, "logprobs": False}),
                              [plain], 64)
        assert without[0].logprob is None


def test_openai_streaming_gives_the_first_token_time_and_the_same_answer(tmp_path, monkeypatch):
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    answer = "<next_version>\nx = 2\n</next_version> and some words after it"
    example = make_example(f"# [[answer:{answer}]] [[logprob:-0.25]]\nx = 1\n",
                           f"# [[answer:{answer}]] [[logprob:-0.25]]\nx = 1\ny = 1\n", "x\n")
    entry = {"kind": "openai", "model": "m", "api_key_env": "", "max_attempts": 1, "logprobs": True,
             "stream": True, "cache": False}
    with FakeOpenAI(chunk_s=0.02) as server:
        streamed = predict_all(build_predictor("api", {**entry, "base_url": server.url}), [example], 64)[0]
        whole = predict_all(build_predictor("api", {**entry, "base_url": server.url, "stream": False}), [example], 64)[0]
    assert streamed.raw_output == whole.raw_output == answer
    assert streamed.output_tokens == whole.output_tokens > 0  # the usage chunk
    assert streamed.logprob == whole.logprob == -0.25
    assert 0 < streamed.ttft_s < streamed.latency_s and whole.ttft_s is None


def test_a_cache_written_before_logprobs_still_answers(tmp_path, monkeypatch):
    from nep.llm.cache import ResponseCache

    path = tmp_path / "old.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE responses (key TEXT PRIMARY KEY, text TEXT NOT NULL, tokens_in INTEGER, "
               "tokens_out INTEGER, latency_s REAL, created REAL)")
    db.execute("INSERT INTO responses VALUES ('k', 'yes', 1, 2, 0.5, 0)")
    db.commit()
    db.close()
    cache = ResponseCache(path)
    assert cache.get("k") == ("yes", 1, 2, 0.5, None)
    cache.close()


def test_runner_keeps_times_beside_the_records(tmp_path, tiny_dir, monkeypatch):
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    test_set = tmp_path / "test.jsonl"
    write_jsonl(test_set, examples())
    entry = {"kind": "hf", "model": str(tiny_dir), "device": "cpu"}
    runs = []
    for name in ("a", "b"):
        metrics = generate("tiny", entry, Settings.of(max_new_tokens=8, batch_size=2, threads=1), test_path=test_set,
                           out_path=tmp_path / name / "out.jsonl", metrics_path=tmp_path / name / "metrics.json",
                           timing_path=tmp_path / name / "timing" / "tiny.json", progress=False)
        assert not any("latency" in k or "per_s" in k or "machine" in k for k in metrics)
        runs.append((tmp_path / name / "out.jsonl").read_bytes())
    assert runs[0] == runs[1]  # confidences included: the same bytes on rerun
    records = list(read_jsonl(tmp_path / "a" / "out.jsonl"))
    assert all(isinstance(r["logprob"], float) and "latency_s" not in r for r in records)
    timing = json.loads((tmp_path / "a" / "timing" / "tiny.json").read_text())
    assert timing["answers_timed"] == len(records) and timing["batch_size"] == 2 and timing["device"] == "cpu"
    assert timing["machine"].endswith("1 thread") and 0 < timing["latency_p50_s"] <= timing["latency_p95_s"]
    assert timing["ttft_p50_s"] > 0 and timing["tokens_per_s"] > 0
    rows = list(read_jsonl(tmp_path / "a" / "timing" / "tiny.answers.jsonl"))
    assert [r["id"] for r in rows] == [r["id"] for r in records]
    assert all(r["latency_s"] > 0 and r["batch"] in (1, 2) and r["ttft_s"] > 0 for r in rows)


@pytest.mark.parametrize("prompt_lookup", [0, 5])
def test_hf_first_token_time_is_not_before_the_prefill(tiny_dir, prompt_lookup):
    """The first token exists only after the first forward pass: with prompt lookup, too, whose
    drafter runs the logits processors before the model does (a logits processor's first call would
    put the first token before the prefill). A prefill made 0.3 s slower must show in ttft."""
    import time as clock

    exs = examples()[:2]
    predictor = build_predictor("tiny", {"kind": "hf", "model": str(tiny_dir), "device": "cpu"})
    predict_all(predictor, exs[:1], max_new_tokens=2, batch_size=1)  # loads the model
    model = predictor.generator.model
    forward = model.forward
    calls = []

    def slow_first_forward(*args, **kwargs):
        if not calls:
            clock.sleep(0.3)
        calls.append(1)
        return forward(*args, **kwargs)

    model.forward = slow_first_forward
    try:
        (pred,) = predict_all(predictor, exs[1:], max_new_tokens=6, batch_size=1, prompt_lookup_tokens=prompt_lookup)
    finally:
        model.forward = forward
    assert pred.ttft_s >= 0.3 and pred.ttft_s <= pred.latency_s


def test_hf_timing_row_names_the_batch_a_call_really_holds(tiny_dir):
    predictor = build_predictor("tiny", {"kind": "hf", "model": str(tiny_dir), "device": "cpu"})
    assert predictor.runs_on(Settings.of(batch_size=8))["batch_size"] == 8
    # prompt lookup answers one prompt per call, whatever generate.batch_size says
    assert predictor.runs_on(Settings.of(batch_size=8, prompt_lookup_tokens=10))["batch_size"] == 1
