"""Read a stage's section of params.yaml, checked against the schema (nep/config/schema.py)."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from nep.config.schema import SECTIONS, ParamsError, validate
from nep.util.jsonl import atomic_file
from nep.util.paths import cache_root

# YAML 1.2's core schema (what DVC's ruamel reader uses for `-S` and `dvc params diff`), not PyYAML's
# YAML 1.1: `1:30` is a string (not 90), `yes`/`on` are strings, `010` is ten, `1e-05` is a float
# (digits may be grouped with `_`, as ruamel allows).
_CORE_SCHEMA = (
    ("tag:yaml.org,2002:bool", r"true|True|TRUE|false|False|FALSE", "tTfF"),
    ("tag:yaml.org,2002:null", r"~|null|Null|NULL|", ["~", "n", "N", ""]),
    ("tag:yaml.org,2002:int", r"[-+]?[0-9][0-9_]*|0o[0-7]+|0x[0-9a-fA-F]+", "-+0123456789"),
    ("tag:yaml.org,2002:float",
     r"[-+]?(?:\.[0-9]+|[0-9][0-9_]*(?:\.[0-9_]*)?)(?:[eE][-+]?[0-9]+)?|[-+]?\.(?:inf|Inf|INF)|\.(?:nan|NaN|NAN)",
     "-+0123456789."),
    ("tag:yaml.org,2002:merge", r"<<", "<"),
)


@lru_cache(maxsize=1)
def _loader() -> type:
    """A safe loader reading YAML 1.2's core schema and refusing a key given twice in one mapping
    (PyYAML would keep the last silently). PyYAML is imported on first use."""
    import yaml
    from yaml.constructor import ConstructorError, SafeConstructor

    class Loader(yaml.SafeLoader):
        yaml_implicit_resolvers: dict = {}

        def construct_yaml_int(self, node: Any) -> int:
            text = self.construct_scalar(node)
            if text.startswith(("0o", "0x")):
                return int(text[2:], 8 if text[1] == "o" else 16)
            return int(text.replace("_", ""), 10)

        def construct_mapping(self, node: Any, deep: bool = False) -> dict:
            if isinstance(node, yaml.MappingNode):
                seen: dict[Any, Any] = {}
                for key_node, _ in node.value:
                    if key_node.tag == "tag:yaml.org,2002:merge":
                        continue
                    key = self.construct_object(key_node, deep=True)
                    try:
                        first = seen.setdefault(key, key_node)
                    except TypeError:
                        continue  # an unhashable key: the constructor reports it
                    if first is not key_node:
                        raise ConstructorError(None, None, f"duplicate key {key!r} (first at line "
                                               f"{first.start_mark.line + 1}): keep one", key_node.start_mark)
            return SafeConstructor.construct_mapping(self, node, deep=deep)

    for tag, pattern, first in _CORE_SCHEMA:
        Loader.add_implicit_resolver(tag, re.compile(f"^(?:{pattern})$"), list(first))
    Loader.add_constructor("tag:yaml.org,2002:int", Loader.construct_yaml_int)
    return Loader


def yaml_error_line(error: Exception, path: str | Path) -> str:
    """One line for a YAML error: `path:line:column: problem (context)`."""
    mark = getattr(error, "problem_mark", None) or getattr(error, "context_mark", None)
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else str(path)
    problem = getattr(error, "problem", None) or str(error)
    context = getattr(error, "context", None)
    text = f"{where}: {problem}" + (f" ({context})" if context else "")
    return " ".join(text.split())


def parse_yaml(text: str, path: str | Path = "<params>") -> Any:
    """YAML text read with `_loader`; a syntax error or a duplicate key is a ParamsError of one
    line naming `path`, line and column."""
    import yaml

    try:
        return yaml.load(text, Loader=_loader())
    except yaml.YAMLError as e:

        raise ParamsError(yaml_error_line(e, path)) from None


def _text(raw: bytes, path: str | Path) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:

        raise ParamsError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None


def load_yaml(path: str | Path) -> Any:
    try:
        raw = Path(path).read_bytes()
    except OSError as e:

        raise ParamsError(f"{path}: cannot read ({e.strerror or e})") from None
    return parse_yaml(_text(raw, path), path)


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

        params = validate(parse_yaml(_text(raw, path), path), path)
        _write_checked(key, params)
    if section is None:
        return params
    if section not in params:
        raise KeyError(f"{path}: no '{section}:' section")
    return params[section]


def load_section(name: str, path: str | Path = "params.yaml") -> Any:
    """One section of params.yaml as its typed schema object (nep.config.schema: `Filter`,
    `Finetune`...), checked like `load_params`, every default filled in. Stages pass it on as it is."""

    if name not in SECTIONS:
        raise KeyError(f"no params section '{name}' (sections: {', '.join(SECTIONS)})")
    return SECTIONS[name].model_validate(load_params(name, path))


def _checked_path() -> Path:

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


    text = json.dumps({"key": key, "params": params})  # key order kept: predictors run in file order
    if json.loads(text)["params"] != params:
        return
    try:
        with atomic_file(_checked_path()) as f:
            f.write(text)
    except OSError:
        pass  # a read-only cache: every stage checks the file itself
