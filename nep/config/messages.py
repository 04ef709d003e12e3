"""One line per schema problem: pydantic's validation errors said in the params' own words
(`path: section.key: problem`), with a did-you-mean for an unknown key. nep/config/schema.py calls
`format_errors` with its root model (Params) and the texts of its ranges."""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

TYPE_WORDS = {
    "int": "an integer", "float": "a number", "bool": "true or false", "string": "a string",
    "list": "a list", "dict": "a mapping", "model": "a mapping",
}
BOUNDS = {"greater_than_equal": "≥ {ge}", "greater_than": "> {gt}", "less_than_equal": "≤ {le}", "less_than": "< {lt}"}


def model_at(root: type[BaseModel], loc: tuple[Any, ...]) -> type[BaseModel] | None:
    """The section model at a location under `root` (None inside a plain mapping)."""
    model: Any = root
    for part in loc:
        field = getattr(model, "model_fields", {}).get(part)
        if field is None:
            return None
        model = field.annotation
    return model if isinstance(model, type) and issubclass(model, BaseModel) else None


def describe(error: dict[str, Any], root: type[BaseModel], ranges: Mapping[str, str] | None = None) -> str:
    """The problem of one pydantic error, in words; `ranges` says what a bound of a key means
    (by the key's name: seed, workers...)."""
    kind, ctx, given = error["type"], error.get("ctx", {}), error.get("input")
    loc = tuple(error["loc"])
    if kind == "extra_forbidden":
        parent = model_at(root, loc[:-1])
        allowed = list(parent.model_fields) if parent else []
        close = difflib.get_close_matches(str(loc[-1]), allowed, n=1)
        where = ".".join(str(p) for p in loc[:-1])
        if close:
            return f"unknown key (did you mean {where + '.' if where else ''}{close[0]}?)"
        return f"unknown key (allowed: {', '.join(allowed)})"
    if kind == "missing":
        return "missing (required)"
    base = kind.split("_")[0]
    if base in TYPE_WORDS and kind.endswith(("_type", "_parsing", "_from_float")):
        return f"{given!r} is not {TYPE_WORDS[base]}"
    if kind == "literal_error":
        return f"{given!r} is not allowed (allowed: {ctx['expected']})"
    if kind == "finite_number":
        why = " (YAML reads a literal too large for a float, such as 1e400, as inf)" if given == given else ""
        return f"{given!r} is not a finite number{why}"
    if kind in BOUNDS:
        allowed = (ranges or {}).get(str(loc[-1]))
        return f"{given!r} is out of range (allowed: {allowed or BOUNDS[kind].format(**ctx)})"
    if kind == "too_short":
        return f"{given!r} is too short (allowed: at least {ctx.get('min_length')} item(s))"
    if kind == "value_error":
        return str(ctx.get("error", error["msg"]))
    return f"{given!r}: {error['msg']}"


def format_errors(exc: ValidationError, root: type[BaseModel], path: str | Path = "params.yaml",
                  ranges: Mapping[str, str] | None = None) -> str:
    """One line per error: `path: section.key: problem`."""
    lines = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"] if isinstance(p, str) and p != "[key]")
        where += "".join(f"[{p}]" for p in error["loc"][-1:] if isinstance(p, int))
        lines.append(f"{path}: {where + ': ' if where else ''}{describe(error, root, ranges)}")
    return "\n".join(lines)
