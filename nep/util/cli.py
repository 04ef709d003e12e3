"""The entry wrapper every nep command runs under (stages, `python -m nep.*`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

from nep.util.errors import NepError
from nep.util.paths import enter_project_root, unwritable


def run_main(main: Callable[[], Any], name: str, *, resumable: bool = False, in_project: bool = True,
             banner: Callable[[], Any] | None = None) -> None:
    """Run a command's `main`: a NepError is one line on stderr and exit 1; Ctrl-C is one line and
    exit 130 (a resumable command says that a rerun continues where it stopped); an OSError saying a
    place cannot be written (read-only, no permission, full) is one line naming it and what decides
    it (nep.util.paths.unwritable), exit 1. With `in_project`,
    it first moves to the project root (a command started in a subdirectory works as from the root);
    `banner` (a stage's one line saying what it does) runs before `main`."""
    try:
        try:
            if in_project:
                enter_project_root()
            if banner is not None:
                banner()
            result = main()
        except OSError as e:
            known = unwritable(e)
            if known is None:
                raise
            raise known from None
    except NepError as e:
        text = str(e)  # prefixed by the command's name unless it already names it (`label.api_key_env: ...`)
        print(text if text.startswith((f"{name}.", f"{name}@", f"{name}:")) else f"{name}: {text}", file=sys.stderr)
        raise SystemExit(1) from None
    except KeyboardInterrupt:
        tail = "; a rerun resumes where it stopped" if resumable else ""
        print(f"\n{name}: interrupted{tail}", file=sys.stderr)
        raise SystemExit(130) from None
    if isinstance(result, int) and not isinstance(result, bool):
        raise SystemExit(result)
