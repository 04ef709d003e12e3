"""`nep config [PATH]`: check a params file: every section against the schema (nep/config/schema.py)
and every predictor entry's options against its kind (nep.predictors.kinds.check_predictor); prints
OK, or one line per problem (exit 1). `--defaults` prints the schema's defaults as YAML."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from nep.config.params import load_yaml
from nep.config.schema import ParamsError, defaults, validate

DESCRIPTION = "Check params.yaml against nep's params schema (every section, every predictor entry)."


def check(params: Any, path: str | Path = "params.yaml") -> dict[str, Any]:
    """`validate` (every section; each predictor entry's shape, kind and `needs`), then each
    predictor entry's options as its kind takes them: the whole check, with the defaults filled in;
    ParamsError with one line per problem."""
    from nep.predictors.kinds import check_predictor

    checked = validate(params, path)
    problems = []
    for name, entry in checked["generate"]["predictors"].items():
        try:
            check_predictor(name, entry)
        except ValueError as e:
            problems.append(f"{path}: {e}")
    if problems:
        raise ParamsError("\n".join(problems))
    return checked


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nep config", description=DESCRIPTION)
    parser.add_argument("path", nargs="?", default="params.yaml")
    parser.add_argument("--defaults", action="store_true", help="print the schema's defaults as YAML")
    args = parser.parse_args(argv)
    if args.defaults:
        import yaml

        print(yaml.safe_dump(defaults(), sort_keys=False), end="")
        return 0
    try:
        check(load_yaml(args.path), args.path)
    except ParamsError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"{args.path}: OK")
    return 0
