"""LLM relevance labeling: is a commit's last edit related to the edits before it?

A commit becomes an example only if its final edit chunk could be anticipated from the earlier
ones. We show a chat model the earlier edits (original → current) and the final edit
(current → new) as diffs, with two related and two unrelated examples, and parse its yes/no.
Used by stages/label.py when `label.backend: openai`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from functools import cache
from typing import Any

from nep.edits import current_version, unified_diff
from nep.llm import (
    ChatRequest,
    backend_config,
    check_failure_metrics,
    get_backend,
    in_request_order,
    yes_no_verdict,
)

SYSTEM = (
    "You review how programmers edit code. For one file you see the edits made so far, as a diff from "
    "the original file to the current version, and one final edit, as a diff from the current version "
    "to the next version. Decide whether the final edit is related to the earlier edits: it continues, "
    "completes or follows from them, so that someone watching the earlier edits could anticipate it "
    "(it uses or updates a name they introduced or changed, repeats the same change at another place, "
    "finishes a feature they started). Answer no when the final edit is independent of them: an "
    "unrelated fix, a different feature, a cosmetic change elsewhere. Reply with one word: yes or no."
)

# (path, language, original, new, answer); the final edit is the last diff chunk of original → new.
EXAMPLES: list[tuple[str, str, str, str, str]] = [
    (
        "shop/cart.py",
        "Python",
        "class Cart:\n    def __init__(self):\n        self.items = []\n\n"
        "    def add(self, item):\n        self.items.append(item)\n\n"
        "    def total(self):\n        return sum(i.price for i in self.items)\n",
        "class Cart:\n    def __init__(self, discount=0.0):\n        self.items = []\n        self.discount = discount\n\n"
        "    def add(self, item):\n        self.items.append(item)\n\n"
        "    def total(self):\n        subtotal = sum(i.price for i in self.items)\n"
        "        return subtotal * (1 - self.discount)\n",
        "yes",
    ),
    (
        "src/main/java/org/example/Parser.java",
        "Java",
        "public class Parser {\n    private final String source;\n\n"
        "    public Parser(String source) {\n        this.source = source;\n    }\n\n"
        "    public int length() {\n        return source.length();\n    }\n}\n",
        "public class Parser {\n    private final String source;\n    private int position;\n\n"
        "    public Parser(String source) {\n        this.source = source;\n    }\n\n"
        "    public int length() {\n        return source.length();\n    }\n\n"
        "    public boolean atEnd() {\n        return position >= source.length();\n    }\n}\n",
        "yes",
    ),
    (
        "tools/report.py",
        "Python",
        "import csv\n\n\ndef load(path):\n    with open(path) as f:\n        return list(csv.reader(f))\n\n\n"
        "def summarize(rows):\n    return len(rows)\n",
        "import csv\nimport logging\n\n\ndef load(path):\n    logging.info(\"loading %s\", path)\n"
        "    with open(path) as f:\n        return list(csv.reader(f))\n\n\n"
        "def summarize(rows):\n    return len(rows)\n\n\nVERSION = \"2.1\"\n",
        "no",
    ),
    (
        "web/static/menu.js",
        "JavaScript",
        "function openMenu(menu) {\n  menu.classList.add('open');\n}\n\n"
        "function closeMenu(menu) {\n  menu.classList.remove('open');\n}\n",
        "// Copyright 2024 the menu authors.\n\nfunction openMenu(menu) {\n  menu.classList.add('open');\n"
        "  menu.setAttribute('aria-expanded', 'true');\n}\n\n"
        "function closeMenu(menu) {\n  menu.classList.remove('open');\n}\n",
        "no",
    ),
]


def describe(path: str, language: str, original: str, new: str) -> str:
    """The user message for one commit: earlier edits and final edit as unified diffs."""
    current = current_version(original, new)
    history = unified_diff(original, current, old_name=f"a/{path}", new_name=f"b/{path}")
    final = unified_diff(current, new, old_name=f"a/{path}", new_name=f"b/{path}")
    return (
        f"File: {path} ({language})\n\n"
        f"Earlier edits (original file → current version):\n{history}\n"
        f"Final edit (current version → next version):\n{final}\n"
        "Is the final edit related to the earlier edits? Answer yes or no."
    )


@cache
def _preamble() -> tuple[tuple[str, str], ...]:
    """The system message and the worked examples, as (role, content) pairs."""
    pairs = [("system", SYSTEM)]
    for path, language, original, new, answer in EXAMPLES:
        pairs += [("user", describe(path, language, original, new)), ("assistant", answer)]
    return tuple(pairs)


def relevance_messages(record: dict[str, Any]) -> list[dict[str, str]]:
    """Chat messages asking whether `record`'s final edit is related to its earlier edits."""
    messages = [{"role": role, "content": content} for role, content in _preamble()]
    messages.append({"role": "user", "content": describe(
        record["new_file"], record.get("lang", ""), record["old_contents"], record["new_contents"])})
    return messages


def label_with_llm(
    records: Iterable[dict[str, Any]],
    *,
    max_failure_rate: float = 0.0,
    prices: dict[str, dict[str, float]] | None = None,
    metrics: dict[str, Any] | None = None,
    check: bool = True,
    **params: Any,
) -> Iterator[dict[str, Any]]:
    """Yield each record, in input order, with `label` 1/0 from the LLM, or None and the reason in
    `label_reason` when the request failed or the answer was neither yes nor no.

    `params` is the stage's params section (keys the backend does not take are ignored). When given,
    `metrics` is filled with the accounting ("llm.*") at the end. With `check`, raises TooManyFailures
    after the last record when the share of null labels exceeds `max_failure_rate` (a stage that
    writes its metrics first passes check=False and calls nep.llm.check_failure_metrics itself).
    """
    records = list(records)
    backend = get_backend("openai", **backend_config(params))
    requests: list[ChatRequest] = []
    for i, record in enumerate(records):
        try:
            messages = relevance_messages(record)
        except (KeyError, ValueError) as e:
            raise ValueError(f"record {i} (commit {record.get('commit')}, {record.get('new_file')}): "
                             f"cannot build the relevance prompt: {e}") from e
        requests.append(ChatRequest(id=str(i), messages=messages))
    unparseable = 0
    for record, result in zip(records, in_request_order(backend.complete_many(requests), requests)):
        label, reason = yes_no_verdict(result)
        unparseable += label is None and result.error is None
        yield {**record, "label": label, "label_reason": reason}
    accounting = {**backend.stats.metrics(prices), "llm.unparseable": unparseable}
    if metrics is not None:
        metrics.update(accounting)
    if check:
        check_failure_metrics(accounting, len(records), max_failure_rate, what="labels")
