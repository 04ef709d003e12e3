"""nep.llm.verdicts: the failure policy, the tally, and one backend interface for labelers and judges."""

from __future__ import annotations

import pytest

from nep.config.schema import section
from nep.data.label import LABELERS
from nep.evaluate.judges import JUDGES, LLMJudge, RulesJudge
from nep.llm.verdicts import Tally, TooManyFailures, Verdict, VerdictBackend, build, check_failure_rate


def built(registry, values):
    """The backend a stage builds from its params section (`label`/`judge`) holding `values`."""
    return build(registry, section(registry.what.split(".")[0], values))


def test_failure_rate():
    check_failure_rate({"timeout": 1}, 100, 0.01)
    check_failure_rate({}, 0, 0.0)
    with pytest.raises(TooManyFailures, match=r"2 of 100 labels failed \(timeout: 2\), more than max_failure_rate=0.01"):
        check_failure_rate({"timeout": 2}, 100, 0.01, "labels")
    with pytest.raises(TooManyFailures) as error:
        check_failure_rate({"timeout": 1, "server_error": 3}, 4, 0.5)
    assert error.value.param == "max_failure_rate" and "(server_error: 3, timeout: 1)" in str(error.value)


def test_tally():
    tally = Tally()
    for v in [Verdict("a", 1, "r", "exact"), Verdict("b", 0, "r", "different"), Verdict("c", None, "r", "timeout"),
              Verdict("d", 1, "r", "exact")]:
        tally.add(v)
    assert tally.metrics() == {"yes": 2, "no": 1, "null": 1, "yes_rate": 0.6667, "reason.different": 1,
                               "reason.exact": 2, "reason.timeout": 1}


def test_every_backend_is_a_verdict_backend_built_from_its_section():
    for registry in (LABELERS, JUDGES):
        for name in registry.names():
            backend = built(registry, {"backend": name, "model": "m", "max_failure_rate": 0.5})
            assert isinstance(backend, VerdictBackend) and backend.max_failure_rate == 0.5, name
            with pytest.raises(ValueError, match=r"\.unrelated: unknown key"):  # never silently dropped
                built(registry, {"backend": name, "unrelated": 1})
    judge = built(JUDGES, {"backend": "openai", "model": "m", "shortcut_exact": False, "concurrency": 3})
    assert isinstance(judge, LLMJudge) and not judge.shortcut_exact and judge.chat["model"] == "m" and judge.chat["concurrency"] == 3
    assert judge.chat["timeout_s"] == 120.0  # the schema's default for judge: one home per default
    assert isinstance(built(JUDGES, {"backend": "rules"}), RulesJudge)
    with pytest.raises(ValueError, match="judge.backend: 'llm' is not allowed"):
        built(JUDGES, {"backend": "llm"})
    with pytest.raises(TypeError, match="not a mapping"):  # the caller holds the section object
        build(JUDGES, {"backend": "rules"})


def test_nulls_are_counted_as_they_stream_and_checked_once():
    class Flaky(VerdictBackend):
        what = "verdicts"

        def decide(self, records):
            for i, r in enumerate(records):
                yield Verdict(str(i), None if r["bad"] else 1, "why", "timeout" if r["bad"] else "ok")

    backend = Flaky(max_failure_rate=0.25)
    stream = backend.verdicts([{"bad": b} for b in (False, True, True, False)])
    next(stream), next(stream)
    assert backend.total == 2 and backend.nulls == {"timeout": 1}  # readable mid-stream: nothing to drain
    list(stream)
    with pytest.raises(TooManyFailures, match="2 of 4 verdicts failed"):
        backend.check()
