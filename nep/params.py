"""Read a stage's section of params.yaml."""

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


def load_yaml(path: str | Path) -> Any:
    return yaml.load(Path(path).read_text(), Loader=_Loader)


def load_params(section: str | None = None, path: str | Path = "params.yaml") -> dict[str, Any]:
    params = load_yaml(path) or {}
    if section is None:
        return params
    if section not in params:
        raise KeyError(f"{path}: no '{section}:' section")
    return params[section] or {}
