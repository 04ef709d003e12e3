"""Yes/no verdicts on records: one interface for relevance labelers and judges, offline or LLM.

    from nep.data.label import LABELERS          # or nep.evaluate.judges.JUDGES
    labeler = build(LABELERS, params)          # params: the stage's section; `backend` picks the kind
    for v in labeler.verdicts(records):        # one per record, in input order, streamed
        v.id, v.value, v.reason, v.tag, v.answer
    labeler.metrics()    # deterministic accounting ("llm.*" for LLM backends), readable at any time
    labeler.timing()     # measured times, for metrics/timing/ only
    labeler.check()      # raises TooManyFailures when a larger share than max_failure_rate is null

A backend owns its accounting and its failure policy: the stage reads them, it passes nothing in.
`LLMVerdicts` is the one loop for every LLM-backed kind (relevance labels, judgments): a subclass
gives the chat `messages(record)` and, optionally, a `shortcut(record)` that decides without a request.
"""

from __future__ import annotations

import contextlib
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

from nep.llm.answers import is_yes_no, parse_yes_no
from nep.llm.backends import backend_config, get_backend
from nep.llm.chat import ChatRequest, ChatResult, in_request_order
from nep.util.errors import NepError
from nep.util.registry import Registry


@dataclass(frozen=True)
class Verdict:
    id: str  # the record's `id`, else its position in the input
    value: int | None  # 1 yes, 0 no, None: no verdict (request failed, answer not yes/no, bad record)
    reason: str  # for a person: "llm: yes", "heuristic: last chunk shares x with earlier chunks"...
    tag: str  # short key counted in the metrics as reason.<tag>: exact, llm, unparseable, timeout...
    answer: str | None = None  # the LLM's raw text, when one answered


class TooManyFailures(NepError):
    """More verdicts stayed null than the stage's `max_failure_rate` allows."""

    def __init__(self, message: str):
        super().__init__(message, param="max_failure_rate")


def check_failure_rate(failures: dict[str, int], total: int, max_failure_rate: float, what: str = "verdicts") -> None:
    """Raise TooManyFailures when sum(failures) / total exceeds `max_failure_rate`."""
    failures = +Counter(failures)
    failed = sum(failures.values())
    if not total or failed / total <= max_failure_rate:
        return
    reasons = ", ".join(f"{k}: {v}" for k, v in sorted(failures.items(), key=lambda kv: (-kv[1], kv[0])))
    raise TooManyFailures(
        f"{failed} of {total} {what} failed ({reasons}), more than max_failure_rate={max_failure_rate}; "
        "the usable answers are cached: fix the endpoint or raise the limit and run again "
        "(only the failed ones are asked again)"
    )


def own_options(cls: type, params: dict[str, Any], skip: frozenset[str] | set[str] = frozenset()) -> dict[str, Any]:
    """The options of `params` that backend `cls` takes. Every option it takes must be a param of
    the section (a backend option with no param would silently keep its default)."""
    own = {f.name for f in fields(cls) if f.init} - set(skip)
    if missing := sorted(own - set(params)):
        raise TypeError(f"{cls.__name__}: options {missing} have no param in the stage's section")
    return {k: params[k] for k in own}


def record_id(record: dict[str, Any], position: int) -> str:
    return str(record["id"]) if record.get("id") is not None else str(position)


@dataclass
class VerdictBackend:
    """Base of every labeler and judge: subclasses implement `decide` (one verdict per record, in order)."""

    max_failure_rate: float = 0.0  # library default: no failure tolerated (the stages pass params.yaml's)
    what: ClassVar[str] = "verdicts"  # named in errors: "labels", "judgments"
    uses_llm: ClassVar[bool] = False

    def __post_init__(self) -> None:
        self.total = 0
        self.nulls: Counter = Counter()  # tag -> verdicts without a value

    @classmethod
    def from_params(cls, cfg: Any) -> VerdictBackend:
        """Built from a stage's params section (a schema object, so every key is a known one);
        the options of other backends (an endpoint's, for an offline labeler) are not its own."""
        return cls(**own_options(cls, cfg.model_dump()))

    def verdicts(self, records: Iterable[dict[str, Any]]) -> Iterator[Verdict]:
        for verdict in self.decide(list(records)):
            self.total += 1
            if verdict.value is None:
                self.nulls[verdict.tag] += 1
            yield verdict

    def decide(self, records: list[dict[str, Any]]) -> Iterator[Verdict]:
        raise NotImplementedError

    def metrics(self) -> dict[str, Any]:
        return {}

    def timing(self) -> dict[str, float]:
        return {}

    def check(self) -> None:
        check_failure_rate(self.nulls, self.total, self.max_failure_rate, self.what)


def build(registry: Registry, cfg: Any) -> VerdictBackend:
    """The backend named by `cfg.backend` in `registry`, built from `cfg`: the stage's params
    section object (nep.config.schema.Label or Judge, which the caller holds: this module reads
    no params of its own)."""
    if isinstance(cfg, Mapping):
        raise TypeError(f"{registry.what}: pass the params section object (nep.config.schema.section), not a mapping")
    return registry.get(cfg.backend).from_params(cfg)


def yes_no_verdict(id: str, result: ChatResult) -> Verdict:
    """1/0 for an answered yes/no question; None with why when the request failed or the answer
    is neither yes nor no (tag `unparseable`)."""
    if result.error:
        return Verdict(id, None, f"llm failed: {result.error}: {result.detail}", result.error)
    answer = parse_yes_no(result.text)
    if answer is None:
        return Verdict(id, None, f"llm answer not yes/no: {result.text[:200]!r}", "unparseable", result.text)
    return Verdict(id, int(answer), f"llm: {'yes' if answer else 'no'}", "llm", result.text)


@dataclass
class LLMVerdicts(VerdictBackend):
    """Yes/no questions to a chat model (nep.llm.client, cached), one per record not decided by `shortcut`."""

    prices: dict[str, dict[str, float]] = field(default_factory=dict)  # USD per Mtok, for llm.cost_usd
    chat: dict[str, Any] = field(default_factory=dict)  # nep.llm.backends.get_backend("openai", **chat)
    uses_llm: ClassVar[bool] = True

    def __post_init__(self) -> None:
        super().__post_init__()
        self.backend = get_backend("openai", accept=is_yes_no, **self.chat)  # only yes/no answers cached

    @classmethod
    def from_params(cls, cfg: Any) -> VerdictBackend:
        params = cfg.model_dump()
        return cls(**own_options(cls, params, skip={"chat"}), chat=backend_config(params))

    def messages(self, record: dict[str, Any]) -> list[dict[str, str]]:
        raise NotImplementedError

    def shortcut(self, record: dict[str, Any]) -> tuple[int, str] | None:
        """(value, tag) for a record decided without a request, else None."""
        return None

    def decide(self, records: list[dict[str, Any]]) -> Iterator[Verdict]:
        decided: dict[int, tuple[int, str]] = {}
        requests: list[ChatRequest] = []
        for i, record in enumerate(records):
            if (known := self.shortcut(record)) is not None:
                decided[i] = known
                continue
            try:
                requests.append(ChatRequest(id=str(i), messages=self.messages(record)))
            except (KeyError, ValueError, TypeError) as e:
                raise ValueError(f"record {record_id(record, i)}: cannot build the prompt: {e!r}") from e
        with contextlib.closing(in_request_order(self.backend.complete_many(requests), requests)) as answers:
            for i, record in enumerate(records):
                if i in decided:
                    value, tag = decided[i]
                    yield Verdict(record_id(record, i), value, tag, tag)
                else:
                    yield yes_no_verdict(record_id(record, i), next(answers))

    def metrics(self) -> dict[str, Any]:
        return self.backend.accounting.metrics(self.prices)

    def timing(self) -> dict[str, float]:
        return self.backend.accounting.timing()


class Tally:
    """Counts of a stream of verdicts: yes, no, null, yes_rate (of decided), reason.<tag>."""

    def __init__(self) -> None:
        self.values: Counter = Counter()
        self.tags: Counter = Counter()

    def add(self, verdict: Verdict) -> Verdict:
        self.values[{1: "yes", 0: "no"}.get(verdict.value, "null")] += 1
        self.tags[verdict.tag] += 1
        return verdict

    def metrics(self) -> dict[str, Any]:
        yes, no = self.values["yes"], self.values["no"]
        return {"yes": yes, "no": no, "null": self.values["null"],
                "yes_rate": round(yes / (yes + no), 4) if yes + no else 0.0,
                **{f"reason.{k}": v for k, v in sorted(self.tags.items())}}


@dataclass
class Report:
    """What a labeling/judging run wrote: metrics (deterministic), timing (measured), the policy check."""

    metrics: dict[str, Any]
    timing: dict[str, float]
    backend: VerdictBackend

    def check(self) -> None:
        self.backend.check()

