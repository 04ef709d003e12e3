"""Read a stage's section of params.yaml, checked against the schema (nep/config.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml


class _Loader(yaml.SafeLoader):
    """SafeLoader that also reads YAML 1.2 floats such as `1e-05` (dvc writes them), which
    PyYAML's YAML 1.1 resolver would return as strings."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def parse_yaml(text: str) -> Any:
    return yaml.load(text, Loader=_Loader)


def load_yaml(path: str | Path) -> Any:
    return parse_yaml(Path(path).read_text())


def load_params(section: str | None = None, path: str | Path = "params.yaml") -> dict[str, Any]:
    """One section of params.yaml (or all of it) as plain data with every default filled in.

    The WHOLE file is checked against the schema (nep/config.py) first, every section and every
    predictor entry, so any stage stops before doing work on any bad param, with one line per
    problem naming `section.key` (nep.config.ParamsError: exits 1 without a traceback)."""
    from nep.config import validate

    params = validate(load_yaml(path), path)
    if section is None:
        return params
    if section not in params:
        raise KeyError(f"{path}: no '{section}:' section")
    return params[section]
