"""Read a stage's section of params.yaml."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml


def load_params(section: str | None = None, path: str | Path = "params.yaml") -> dict[str, Any]:
    params = yaml.safe_load(Path(path).read_text()) or {}
    if section is None:
        return params
    if section not in params:
        raise KeyError(f"{path}: no '{section}:' section")
    return params[section] or {}
