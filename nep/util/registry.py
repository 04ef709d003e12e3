"""One registry style for every pluggable part (sources, labelers, judges, predictors, backends).

A registry maps a name to "module:attribute"; the module is imported only when that name is
chosen, so heavy dependencies (torch, vllm, openai) load only for the parts a run uses.
"""

from __future__ import annotations

import difflib
import importlib
from typing import Any


class Registry:
    def __init__(self, what: str, entries: dict[str, str]):
        self.what = what  # e.g. "generate.predictors.<name>.kind", named in errors
        self.entries = dict(entries)

    def names(self) -> list[str]:
        return list(self.entries)

    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def check(self, name: str) -> None:
        """ValueError naming the param, what was given and what is allowed, with a did-you-mean."""
        if name in self.entries:
            return
        close = difflib.get_close_matches(str(name), self.entries, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"{self.what}: unknown {name!r} (choose one of {', '.join(self.entries)}){hint}")

    def get(self, name: str) -> Any:
        """The registered object, imported on first use."""
        self.check(name)
        module, attr = self.entries[name].split(":")
        return getattr(importlib.import_module(module), attr)
