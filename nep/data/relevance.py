"""LLM relevance labeling: is a commit's last edit related to the edits before it?

A commit becomes an example only if its final edit chunk could be anticipated from the earlier
ones. We show a chat model the earlier edits (original → current) and the final edit
(current → new) as diffs, with two related and two unrelated examples, and parse its yes/no.
`LLMRelevance` is the `openai` labeler (`label.backend: openai`, nep.data.label.LABELERS).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any, ClassVar

from nep.core.edits import current_version, unified_diff
from nep.llm.verdicts import LLMVerdicts

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


@dataclass
class LLMRelevance(LLMVerdicts):
    """Relevance labels from a chat model: 1 (yes), 0 (no), None with the reason when it failed."""

    what: ClassVar[str] = "labels"

    def messages(self, record: dict[str, Any]) -> list[dict[str, str]]:
        return relevance_messages(record)
