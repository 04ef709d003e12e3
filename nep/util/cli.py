"""The entry wrapper every nep command runs under (stages, `python -m nep.*`)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path
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


def guard_requirements(name: str | None = None) -> None:
    """Make a module that is not installed (the project's requirements missing from this Python:
    `dvc repro` run outside the virtual environment) end the command in one line saying so, from
    anywhere, imports at the top of a module included; any other exception keeps its traceback.
    `name` (the command's) defaults to the name of the script that runs, read when it fails."""
    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        module = (getattr(value, "name", None) or "").split(".")[0]
        if issubclass(kind, ModuleNotFoundError) and module and module not in ("nep", "stages"):
            command = name or Path(sys.argv[0]).stem or "nep"
            print(f"{command}: module {module!r} is not installed in this Python ({sys.executable}): activate the "
                  "project's virtual environment, or run `pip install -r requirements.txt`", file=sys.stderr)
            return  # an uncaught exception: the exit status is 1
        previous(kind, value, tb)

    sys.excepthook = hook

