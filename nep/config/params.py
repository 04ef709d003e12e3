"""Read a stage's section of params.yaml, checked against the schema (nep/config/schema.py)."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any


@lru_cache(maxsize=1)
def _loader() -> type:
    """SafeLoader that also reads YAML 1.2 floats such as `1e-05` (dvc writes them), which
    PyYAML's YAML 1.1 resolver would return as strings. (PyYAML is imported on first use.)"""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_implicit_resolver(
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
    return Loader


def parse_yaml(text: str) -> Any:
    import yaml

    return yaml.load(text, Loader=_loader())


def load_yaml(path: str | Path) -> Any:
    return parse_yaml(Path(path).read_text())


def load_params(section: str | None = None, path: str | Path = "params.yaml") -> dict[str, Any]:
    """One section of params.yaml (or all of it) as plain data with every default filled in.

    The WHOLE file is checked against the schema (nep/config/schema.py) first, every section and every
    predictor entry, so any stage stops before doing work on any bad param, with one line per
    problem naming `section.key` (nep.config.schema.ParamsError: exits 1 without a traceback).

    A file that passed is remembered (`params.checked.json` in nep's cache): the next stage that
    reads the same bytes with the same nep code skips the schema and pydantic's import (about
    0.15 s per stage)."""
    raw = Path(path).read_bytes()
    key = _check_key(raw)
    params = _read_checked(key)
    if params is None:
        from nep.config.schema import validate

        params = validate(parse_yaml(raw.decode("utf-8")), path)
        _write_checked(key, params)
    if section is None:
        return params
    if section not in params:
        raise KeyError(f"{path}: no '{section}:' section")
    return params[section]


def load_section(name: str, path: str | Path = "params.yaml") -> Any:
    """One section of params.yaml as its typed schema object (nep.config.schema: `Filter`,
    `Finetune`...), checked like `load_params`, every default filled in. Stages pass it on as it is."""
    from nep.config.schema import SECTIONS

    if name not in SECTIONS:
        raise KeyError(f"no params section '{name}' (sections: {', '.join(SECTIONS)})")
    return SECTIONS[name].model_validate(load_params(name, path))


def _checked_path() -> Path:
    from nep.util.paths import cache_root

    return cache_root() / "params.checked.json"


def _check_key(raw: bytes) -> str:
    """What a check of params.yaml depends on: its bytes, nep's code (the schema, the predictor
    kinds and their options), pydantic's and Python's versions."""
    import hashlib
    import importlib.util
    import sys

    h = hashlib.sha256(raw)
    h.update(sys.version.encode())
    for source in sorted(Path(__file__).parent.glob("*.py")):
        h.update(source.name.encode() + b"\0" + source.read_bytes())
    spec = importlib.util.find_spec("pydantic")
    if spec is not None and spec.origin:
        version = Path(spec.origin).with_name("version.py")
        h.update(version.read_bytes() if version.exists() else spec.origin.encode())
    return h.hexdigest()


def _read_checked(key: str) -> dict[str, Any] | None:
    import json

    try:
        kept = json.loads(_checked_path().read_text())
    except (OSError, ValueError):
        return None
    return kept.get("params") if isinstance(kept, dict) and kept.get("key") == key else None


def _write_checked(key: str, params: dict[str, Any]) -> None:
    """Remember the checked params when they survive a JSON round trip unchanged."""
    import json

    from nep.util.jsonl import atomic_file

    text = json.dumps({"key": key, "params": params})  # key order kept: predictors run in file order
    if json.loads(text)["params"] != params:
        return
    try:
        with atomic_file(_checked_path()) as f:
            f.write(text)
    except OSError:
        pass  # a read-only cache: every stage checks the file itself
