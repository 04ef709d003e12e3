"""`nep config [PATH]`: check a params file against the schema (nep/config/schema.py):
prints OK, or one line per problem (exit 1); `--defaults` prints the schema's defaults as YAML."""

from __future__ import annotations

import argparse
import sys

import yaml

from nep.config.params import load_yaml
from nep.config.schema import ParamsError, defaults, validate

DESCRIPTION = "Check params.yaml against nep's params schema (every section, every predictor entry)."


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="nep config", description=DESCRIPTION)
    parser.add_argument("path", nargs="?", default="params.yaml")
    parser.add_argument("--defaults", action="store_true", help="print the schema's defaults as YAML")
    args = parser.parse_args(argv)
    if args.defaults:
        print(yaml.safe_dump(defaults(), sort_keys=False), end="")
        return 0
    try:
        validate(load_yaml(args.path), args.path)
    except ParamsError as e:
        print(e, file=sys.stderr)
        return 1
    print(f"{args.path}: OK")
    return 0
