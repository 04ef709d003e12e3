"""`nep <command>` (also `python -m nep <command>`): the one entry to nep's commands.

    nep --help                 # the commands, one line each
    nep config                 # check params.yaml against the schema (and every predictor entry)
    nep presets paper          # params.yaml = the committed default + presets/paper.yaml
    nep preflight              # what the configured run needs, checked before paying for it
    nep compare                # predictors x headline metrics x experiments, in 80 columns
    nep score --test T --predictions P...   # score predictions files, no pipeline needed

A command runs in the project root (the nearest directory at or above the working directory with
dvc.yaml and params.yaml), so it works from any directory of the project. To add a command: one
line in COMMANDS naming its `main(argv)`; the module is imported only when the command runs.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass

from nep.util.cli import run_main
from nep.util.registry import Registry


@dataclass(frozen=True)
class Command:
    target: str  # "module:function", the function taking argv (a list of str) and returning an exit code or None
    summary: str  # one line for `nep --help`
    in_project: bool = True  # run in the project root (False: where it was started; it needs no project)


COMMANDS: dict[str, Command] = {
    "config": Command("nep.commands.config:main", "check params.yaml against the schema; --defaults prints them"),
    "presets": Command("nep.config.presets:main", "apply presets/NAME.yaml over the committed params.yaml"),
    "preflight": Command("nep.commands.preflight:main", "check what the configured run needs before paying for it"),
    "compare": Command("nep.commands.compare:main", "predictors x headline metrics x experiments, in 80 columns"),
    "score": Command("nep.commands.score:main", "score predictions files against a test set, no pipeline needed",
                     in_project=False),
}


def usage() -> str:
    width = max(map(len, COMMANDS))
    lines = ["usage: nep <command> [options]   (or: python -m nep <command>)", "", "commands:"]
    lines += [f"  {name:<{width}}  {command.summary}" for name, command in COMMANDS.items()]
    lines += ["", "`nep <command> --help` describes a command's options."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run `nep <command> ...`: --help (or nothing) lists the commands; an unknown command is one
    line with a did-you-mean (exit 2)."""
    args = sys.argv[1:] if argv is None else list(argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        raise SystemExit(0 if args else 2)
    name, rest = args[0], args[1:]
    try:
        Registry("command", {n: c.target for n, c in COMMANDS.items()}).check(name)
    except ValueError as e:
        print(f"nep: {e}", file=sys.stderr)
        raise SystemExit(2) from None
    command = COMMANDS[name]

    def run() -> object:
        module, function = command.target.split(":")
        return getattr(importlib.import_module(module), function)(rest)

    run_main(run, name, in_project=command.in_project)
