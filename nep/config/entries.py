"""The `generate.predictors` entries as the schema checks them: each name a plain file name, each
entry a mapping with a known `kind` and a `needs` path. The kind's own options are checked by
nep.predictors.kinds.check_predictor (the generate stage, `nep config`, `nep preflight`): the
schema never imports a predictor."""

from __future__ import annotations

import difflib
import re
from typing import Any

# A predictor's name is a file name (data/generate/<name>.jsonl) and part of a DVC stage name
PREDICTOR_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
# The predictor kinds by name (nep.predictors.kinds.KINDS maps each to its class: the same names, a test
# checks). Here the schema checks an entry's shape, kind and `needs`; the kind's own options are
# checked by nep.predictors.kinds.check_predictor, which the generate stage, `nep config` and
# `nep preflight` run (importing the predictor classes, which the other stages never need).
PREDICTOR_KINDS = ("finetuned", "hf", "vllm", "openai", "file", "identity", "propagate", "lookup", "hybrid")


def check_predictor_entry(name: str, entry: Any) -> None:
    """Raise ValueError (one line naming `generate.predictors.<name>.<key>`) when a predictor entry
    is not a mapping, has no or an unknown `kind` (with a did-you-mean), or no `needs` path."""
    where = f"generate.predictors.{name}"
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: a mapping with `kind` and `needs`, not {entry!r}")
    kind = entry.get("kind")
    if not isinstance(kind, str) or not kind:
        raise ValueError(f"{where}.kind: missing (choose one of {', '.join(PREDICTOR_KINDS)})")
    if kind not in PREDICTOR_KINDS:
        close = difflib.get_close_matches(kind, PREDICTOR_KINDS, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{where}.kind: unknown {kind!r} (choose one of {', '.join(PREDICTOR_KINDS)}){hint}")
    if "needs" in entry and not isinstance(entry["needs"], str):
        raise ValueError(f"{where}.needs: expected a path (str), got {entry['needs']!r}")
    if not entry.get("needs"):
        raise ValueError(f"{where}.needs: missing (the one path this predictor depends on: "
                         "its model directory or file, else data/split/test.jsonl)")


def predictor_problems(params: Any) -> list[str]:
    """One line per bad `generate.predictors` entry (mappings only; the schema names the rest)."""
    generate = params.get("generate") if isinstance(params, dict) else None
    predictors = generate.get("predictors") if isinstance(generate, dict) else None
    if not isinstance(predictors, dict):
        return []
    problems = []
    for name, entry in predictors.items():
        if not isinstance(name, str) or not PREDICTOR_NAME.fullmatch(name):
            problems.append(f"generate.predictors: {name!r} is not a plain name: use letters, digits, '_', '-' "
                            "and '.' (not first), at most 64 characters (it names data/generate/<name>.jsonl)")
            continue
        if isinstance(entry, dict):
            try:
                check_predictor_entry(str(name), entry)
            except ValueError as e:
                problems.append(str(e))
    return problems
