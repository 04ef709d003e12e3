"""nep's one error type, and the entry wrapper every command runs under.

A *known* failure (a bad param, an unreadable file, an unreachable server, a missing package) is a
`NepError`: it names what it is about (`param="filter.max_chars"` or `path="data/x.jsonl"`) and says
what to do (`hint`). `run_main` prints it as one line and exits 1; anything else keeps its traceback,
since it is a bug. Ctrl-C ends a command with one line (exit 130).
"""

from __future__ import annotations

from pathlib import Path


class NepError(Exception):
    """A failure nep knows how to explain in one line.

    message: what went wrong; param: the params.yaml key it is about (dotted); path: the file or
    directory it is about; hint: what to do about it."""

    def __init__(self, message: str, *, param: str | None = None, path: str | Path | None = None,
                 hint: str | None = None) -> None:
        self.message = message
        self.param = param
        self.path = str(path) if path is not None else None
        self.hint = hint
        super().__init__(self.line())

    def line(self) -> str:
        """`path: param: message (hint)`, leaving out what the message already names."""
        parts = [x for x in (self.path, self.param) if x and x not in self.message]
        text = ": ".join([*parts, self.message])
        return f"{text} ({self.hint})" if self.hint else text
