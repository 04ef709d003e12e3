"""nep's one error type, and the entry wrapper every command runs under.

A *known* failure (a bad param, an unreadable file, an unreachable server, a missing package) is a
`NepError`: it names what it is about (`param="filter.max_chars"` or `path="data/x.jsonl"`) and says
what to do (`hint`). `run_main` prints it as one line and exits 1; anything else keeps its traceback,
since it is a bug. Ctrl-C ends a command with one line (exit 130).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any


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


def run_main(main: Callable[[], Any], name: str, *, resumable: bool = False) -> None:
    """Run a command's `main`: a NepError is one line on stderr and exit 1; Ctrl-C is one line and
    exit 130 (a resumable command says that a rerun continues where it stopped)."""
    try:
        result = main()
    except NepError as e:
        print(f"{name}: {e}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        tail = "; a rerun resumes where it stopped" if resumable else ""
        print(f"\n{name}: interrupted{tail}", file=sys.stderr)
        raise SystemExit(130) from None
    if isinstance(result, int) and not isinstance(result, bool):
        raise SystemExit(result)
