"""nep.llm.client's OpenAI backend against a real local server: faults, retries, concurrency, cache, secrets."""

from __future__ import annotations

import logging
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest
from conftest import REPO_ROOT

from nep.llm.backends import backend_config, get_backend
from nep.llm.cache import CachedBackend, cache_path
from nep.llm.chat import ChatRequest, in_request_order
from nep.llm.client import OpenAIBackend
from nep.util.errors import NepError

KEY = "sk-nep-test-SECRET-0123456789"
# What a caller passes besides base_url/model/api_key_env (the client has no defaults: they are the params')
ENDPOINT = dict(concurrency=16, timeout_s=60.0, max_attempts=6, temperature=0.0)


def backend(server, **overrides) -> OpenAIBackend:
    config = dict(ENDPOINT, base_url=server.url, model="fake-model", api_key_env="NEP_TEST_KEY", concurrency=4,
                  timeout_s=0.5, max_attempts=3, max_tokens=5)
    return get_backend("openai", **{**config, **overrides})


def request(i: int | str, text: str = "") -> ChatRequest:
    return ChatRequest(id=str(i), messages=[{"role": "system", "content": "Answer yes or no."},
                                            {"role": "user", "content": f"question {i} {text}"}])


@pytest.fixture(autouse=True)
def api_key(monkeypatch):
    monkeypatch.setenv("NEP_TEST_KEY", KEY)


# One request per fault; transient faults (first attempt only) are retried into an answer,
# persistent ones (`*`) end failed with their reason after max_attempts. A 200 that is not a usable
# completion (malformed, HTML, no choices, null or empty content) is retried like a 5xx.
FAULTS = [
    ("429", None, 2), ("500", None, 2), ("503", None, 2), ("slow", None, 2), ("drop", None, 2),
    ("malformed", None, 2), ("html", None, 2), ("nochoices", None, 2), ("null", None, 2), ("empty", None, 2),
    ("malformed,503", None, 3), ("429,503,500", "server_error", 3), ("*500", "server_error", 3),
    ("*503", "server_error", 3), ("*slow", "timeout", 3), ("*drop", "connection", 3),
    ("*malformed", "bad_response", 3), ("*html", "bad_response", 3), ("*nochoices", "bad_response", 3),
    ("*null", "empty_content", 3), ("400", "client_error", 1), ("401", "client_error", 1), ("", None, 1),
]


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch):
    monkeypatch.setattr("nep.llm.client.RETRY_DELAY_S", 0.01)


def test_every_fault_ends_answered_or_failed_with_reason(fake_openai):
    llm = backend(fake_openai, concurrency=len(FAULTS))
    requests = [request(i, f"[[fault:{f}]]" if f else "") for i, (f, _, _) in enumerate(FAULTS)]
    results = {r.id: r for r in llm.complete_many(requests)}
    assert sorted(results, key=int) == [r.id for r in requests]  # nothing lost, nothing twice
    for i, (fault, reason, attempts) in enumerate(FAULTS):
        r = results[str(i)]
        assert r.error == reason, (fault, r)
        assert r.attempts == attempts, (fault, r)
        if reason is None:
            assert r.text == "yes" and r.input_tokens > 0
        else:
            assert r.text is None and r.detail
    assert fake_openai.requests == sum(a for _, _, a in FAULTS) == llm.accounting.attempts
    m = llm.accounting.metrics()
    assert m["llm.requests"] == len(FAULTS) and m["llm.failed"] == 11 and m["llm.cache_hits"] == 0
    assert m["llm.failed.server_error"] == 3 and m["llm.failed.client_error"] == 2
    assert m["llm.failed.bad_response"] == 3 and m["llm.failed.empty_content"] == 1
    assert m["llm.failed.timeout"] == 1
    assert m["llm.retries"] == fake_openai.requests - len(FAULTS)
    assert m["llm.input_tokens"] > 0 and m["llm.output_tokens"] > 0
    assert fake_openai.authorization == {f"Bearer {KEY}"}
    echoed = results[str(next(i for i, f in enumerate(FAULTS) if f[0] == "401"))]
    assert "bad credentials" in echoed.detail and KEY not in echoed.detail
    assert "after 3 attempts" in results[str(next(i for i, f in enumerate(FAULTS) if f[0] == "*html"))].detail


def test_malformed_answers_retried_at_a_30_percent_fault_rate_stay_within_policy(fake_openai):
    """Bad bodies on a first try (as from an overloaded proxy) are answered on the second: none fails."""
    kinds = ["malformed", "html", "nochoices", "null"]
    requests = [request(i, f"[[fault:{kinds[i % 4]}]]" if i % 10 < 3 else "") for i in range(40)]
    results = list(backend(fake_openai, concurrency=8).complete_many(requests))
    assert len(results) == 40 and all(r.error is None and r.text == "yes" for r in results)
    assert fake_openai.requests == 40 + 12


@pytest.mark.parametrize("suffix", ["  ", "\t", " \t "])
def test_a_key_with_surrounding_blanks_is_stripped(fake_openai, monkeypatch, suffix):
    monkeypatch.setenv("NEP_TEST_KEY", f" {KEY}{suffix}")
    [result] = backend(fake_openai).complete_many([request(1)])
    assert result.text == "yes" and fake_openai.authorization == {f"Bearer {KEY}"}


@pytest.mark.parametrize("bad, what", [(KEY + "\r", f"U+000D (carriage return) at character {len(KEY) + 1}"),
                                       (f"{KEY}\r\n", "U+000D"), (f" {KEY}\n", "U+000A (line feed)"),
                                       (KEY[:6] + "\r" + KEY[6:], "U+000D (carriage return) at character 7"),
                                       (KEY + "\x1bx", "U+001B at character 30"), (KEY + "é", "U+00E9 (latin small letter e")])
def test_a_key_a_header_cannot_carry_is_refused_in_one_line_naming_api_key_env(fake_openai, monkeypatch, bad, what):
    monkeypatch.setenv("NEP_TEST_KEY", bad)
    with pytest.raises(NepError) as error:
        list(backend(fake_openai).complete_many([request(1)]))
    message = str(error.value)
    assert error.value.param == "api_key_env" and "NEP_TEST_KEY" in message and what in message
    assert "\n" not in message and KEY[8:] not in message and fake_openai.requests == 0


def test_a_server_echoing_the_key_puts_it_in_no_answer_detail_log_or_cache(fake_openai, caplog):
    caplog.set_level(logging.DEBUG)
    requests = [request(0, "[[fault:echo]]"), request(1, "[[fault:*401]]")]
    results = {r.id: r for r in backend(fake_openai).complete_many(requests)}
    assert results["0"].text == "yes (your header: Bearer ***)"
    assert "Bearer ***" in results["1"].detail
    blob = b"".join(p.read_bytes() for p in cache_path().parent.iterdir())
    assert KEY.encode() not in blob and b"Bearer ***" in blob
    assert KEY not in caplog.text


def test_library_log_lines_are_scrubbed_while_a_backend_runs(caplog):
    from nep.llm.secrets import scrubbed_logs, secret_forms

    caplog.set_level(logging.DEBUG)
    with scrubbed_logs(secret_forms(KEY)):
        logging.getLogger("openai._base_client").warning("headers: %r", {"Authorization": f"Bearer {KEY}"})
        logging.getLogger("httpx").warning("sent %s", KEY)
    logging.getLogger("httpx").warning("after %s", "x")
    assert KEY not in caplog.text and caplog.text.count("***") == 2 and "after x" in caplog.text


@pytest.mark.parametrize("secret", [KEY, 'sk-"quoted"\\back', "sk-é/ü+x y"])
def test_scrub_removes_raw_escaped_and_quoted_forms(secret):
    import json
    import urllib.parse

    from nep.llm.secrets import scrub, secret_forms

    forms = secret_forms(secret)
    texts = [secret, json.dumps(secret), json.dumps({"k": f"Bearer {secret}"}), repr(secret),
             repr(f"Bearer {secret}".encode()), urllib.parse.quote(secret), urllib.parse.quote_plus(secret),
             f"x{secret}y{secret}"]
    for text in texts:
        clean = scrub(text, forms)
        assert "***" in clean and secret not in clean and secret[3:] not in clean, text


def test_retry_after_is_honoured(fake_openai):
    fake_openai.retry_after = "0.6"
    start = time.perf_counter()
    [result] = backend(fake_openai).complete_many([request(0, "[[fault:429]]")])
    assert result.text == "yes" and result.attempts == 2
    assert time.perf_counter() - start >= 0.6


def test_accounting_names_times_apart_and_no_request_logs(fake_openai, caplog):
    caplog.set_level(logging.INFO)
    llm = backend(fake_openai, model="gpt-x")
    list(llm.complete_many([request(0, "[[fault:429]] [[delay:0.2]]"), request(1, "[[delay:0.2]]")]))
    m = llm.accounting.metrics({"gpt-x": {"input": 0.5, "output": 2.0}})
    assert set(m) == {"llm.requests", "llm.cache_hits", "llm.retries", "llm.failed", "llm.input_tokens",
                      "llm.output_tokens", "llm.cost_usd"}
    assert m["llm.retries"] == 1 and m["llm.cost_usd"] > 0
    assert "llm.cost_usd" not in llm.accounting.metrics({})
    assert llm.accounting.timing()["llm.wall_time_s"] >= 0.4  # measured; never in the metrics
    assert not [r for r in caplog.records if r.name.split(".")[0] in ("httpx", "httpx2", "openai")]


def test_concurrency_is_bounded_and_results_stream(fake_openai):
    llm = backend(fake_openai, concurrency=3, timeout_s=5)
    requests = [request(0, "[[delay:1.5]]")] + [request(i, "[[delay:0.05]]") for i in range(1, 13)]
    start = time.perf_counter()
    arrivals = [(r.id, time.perf_counter() - start) for r in llm.complete_many(requests)]
    assert fake_openai.max_in_flight == 3
    # the slow request does not hold the others back: they all arrive before it
    assert arrivals[-1][0] == "0" and arrivals[0][1] < arrivals[-1][1] - 1.0
    ordered = list(in_request_order(iter([r for r in llm.complete_many(requests)][::-1]), requests))
    assert [r.id for r in ordered] == [r.id for r in requests]


def test_cache_resends_only_missing_requests(fake_openai, monkeypatch):
    requests = [request(i) for i in range(6)] + [request(6, "[[fault:*500]]"), request(7)]
    requests.append(ChatRequest(id="dup", messages=requests[0].messages))  # identical to request 0
    first = backend(fake_openai)
    results = {r.id: r for r in first.complete_many(requests)}
    assert results["dup"].text == "yes" and results["6"].error == "server_error"
    assert fake_openai.requests == 7 + 3  # the duplicate is sent once; 3 attempts at the failing one

    fake_openai.reset_counts()
    monkeypatch.setenv("NEP_TEST_KEY", "sk-another-key")  # the key is not part of the cache key
    second = backend(fake_openai)
    again = {r.id: r for r in second.complete_many(requests)}
    assert fake_openai.requests == 3  # only the failed request is tried again
    assert second.accounting.cache_hits == 8 and again["3"].cached and again["3"].text == "yes"
    assert again["3"].latency_s == results["3"].latency_s  # the first measurement is kept

    fake_openai.reset_counts()
    list(backend(fake_openai, temperature=0.7).complete_many(requests[:2]))
    list(backend(fake_openai, model="other-model").complete_many(requests[:2]))
    assert fake_openai.requests == 4  # sampling params and model are part of the key

    blob = cache_path().read_bytes() + b"".join(p.read_bytes() for p in cache_path().parent.iterdir())
    assert KEY.encode() not in blob and b"sk-another-key" not in blob


def test_api_key_read_at_call_time_and_only_when_needed(fake_openai, monkeypatch):
    monkeypatch.delenv("NEP_TEST_KEY")
    llm = backend(fake_openai)
    with pytest.raises(NepError, match="NEP_TEST_KEY is not set") as error:
        list(llm.complete_many([request(1)]))
    assert error.value.param == "api_key_env" and fake_openai.requests == 0
    monkeypatch.setenv("NEP_TEST_KEY", KEY)
    list(backend(fake_openai).complete_many([request(1)]))
    monkeypatch.delenv("NEP_TEST_KEY")
    [cached] = backend(fake_openai).complete_many([request(1)])  # all cached: no key needed
    assert cached.cached and cached.text == "yes"
    list(backend(fake_openai, api_key_env="").complete_many([request(2)]))  # a server without auth
    assert "Bearer EMPTY" in fake_openai.authorization


def test_unreachable_endpoint_stops_with_the_param(tmp_path, monkeypatch):
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path))
    llm = get_backend("openai", **{**ENDPOINT, "max_attempts": 1}, base_url="http://127.0.0.1:9/v1", model="m",
                      api_key_env="NEP_TEST_KEY")
    with pytest.raises(NepError, match="cannot connect to http://127.0.0.1:9/v1") as error:
        list(llm.complete_many([request(1)]))
    assert error.value.param == "base_url"


def test_registry_and_config():
    with pytest.raises(ValueError, match="unknown 'nope'"):
        get_backend("nope")
    with pytest.raises(TypeError, match="bogus"):
        get_backend("openai", model="m", bogus=1)
    with pytest.raises(TypeError, match="base_url"):  # no defaults in the client: the params give them
        get_backend("openai", model="m")
    endpoint = dict(ENDPOINT, base_url="http://127.0.0.1:9/v1", api_key_env="K")
    assert isinstance(get_backend("openai", model="m", **endpoint), CachedBackend)
    assert isinstance(get_backend("openai", model="m", cache=False, **endpoint), OpenAIBackend)
    assert backend_config({"backend": "openai", "model": "m", "prices": {}, "concurrency": 2, "cache": False}) == {
        "model": "m", "concurrency": 2, "cache": False}


KILLED_RUN = textwrap.dedent("""
    import sys
    from nep.llm.backends import get_backend
    from nep.llm.chat import ChatRequest
    llm = get_backend("openai", base_url=sys.argv[1], model="fake-model", api_key_env="NEP_TEST_KEY",
                      concurrency=4, timeout_s=60.0, max_attempts=6, temperature=0.0)
    requests = [ChatRequest(str(i), [{"role": "user", "content": f"q{i} [[delay:0.05]]"}]) for i in range(60)]
    for result in llm.complete_many(requests):
        print(result.id, flush=True)
""")


def test_sigkilled_run_resumes_without_resending_answers(fake_openai, tmp_path):
    proc = subprocess.Popen([sys.executable, "-c", KILLED_RUN, fake_openai.url], cwd=REPO_ROOT,
                            stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 30
    while fake_openai.requests < 24 and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    answered = sqlite3.connect(cache_path()).execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert 12 <= answered < 60

    fake_openai.reset_counts()
    llm = get_backend("openai", **ENDPOINT, base_url=fake_openai.url, model="fake-model", api_key_env="NEP_TEST_KEY")
    requests = [ChatRequest(str(i), [{"role": "user", "content": f"q{i} [[delay:0.05]]"}]) for i in range(60)]
    results = list(llm.complete_many(requests))
    assert len(results) == 60 and all(r.text == "yes" for r in results)
    assert fake_openai.requests == 60 - answered and llm.accounting.cache_hits == answered
