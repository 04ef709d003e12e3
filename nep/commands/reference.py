"""The params reference (docs/params.md), generated from the schema: every section, key, type, allowed
range and default of nep/config/schema.py, and every predictor kind's options.

    python -m nep.commands.reference > docs/params.md

A key's description is its schema field's `description` when it has one, else the comment on that key
in params.yaml (the end-of-line comment, after any comment lines just above the key). A test checks
that the committed docs/params.md is what this prints.
"""

from __future__ import annotations

import dataclasses
import re
import sys
import typing
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt, MinLen
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from nep.config.schema import Params
from nep.predictors import kinds as base
from nep.predictors.kinds import KINDS, RESERVED_KEYS, registry
from nep.predictors.prompts import SYSTEM_INSTRUCTION

PARAMS_YAML = Path(__file__).resolve().parents[2] / "params.yaml"
_KEY = re.compile(r"^(?P<indent> *)(?P<key>[A-Za-z_][\w-]*):(?P<rest>.*)$")


def split_comment(line: str) -> tuple[str, str]:
    """(code, comment) of a YAML or shell line; a `#` inside quotes, or not after a blank, is not a
    comment."""
    quote = ""
    for i, ch in enumerate(line):
        if quote:
            quote = "" if ch == quote else quote
        elif ch in "\"'":
            quote = ch
        elif ch == "#" and (i == 0 or line[i - 1] in " \t"):
            return line[:i].rstrip(), line[i + 1 :].strip()
    return line.rstrip(), ""


def yaml_comments(path: Path = PARAMS_YAML) -> dict[str, str]:
    """Dotted key → its comment in a params file written as params.yaml is (block style, two spaces
    per level): the comment lines just above the key, then its end-of-line comment."""
    comments: dict[str, str] = {}
    stack: list[tuple[int, str]] = []
    above: list[str] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if stripped.startswith("#"):
            above.append(stripped.lstrip("#").strip())
            continue
        match = _KEY.match(line)
        if not match:
            above = []
            continue
        indent = len(match["indent"])
        while stack and stack[-1][0] >= indent:
            stack.pop()
        stack.append((indent, match["key"]))
        key = ".".join(k for _, k in stack)
        eol = split_comment(match["rest"])[1]
        header = " ".join(above if indent else [])
        text = " ".join([header if not header.endswith(":") else "", eol]).strip()
        if text:
            comments[key] = text
        above = []
    return comments


def type_name(hint: Any) -> str:
    """A type hint as a reader writes it: `int`, `list[str]`, `"git" | "hf"`, `{input: float, ...}`."""
    origin = get_origin(hint)
    if origin is Literal:
        return " | ".join(f'"{a}"' if isinstance(a, str) else repr(a) for a in get_args(hint))
    if isinstance(hint, type) and issubclass(hint, BaseModel):
        fields = ", ".join(f"{k}: {type_name(f.annotation)}" for k, f in hint.model_fields.items())
        return "{" + fields + "}"
    if origin in (list, dict):
        inner = ", ".join(type_name(a) for a in get_args(hint))
        return f"{origin.__name__}[{inner}]"
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        return " | ".join(type_name(a) for a in get_args(hint))
    if hint is type(None):
        return "null"
    if hint is typing.Any:
        return "any"
    return getattr(hint, "__name__", str(hint).replace("typing.", ""))


def bounds(field: FieldInfo) -> str:
    """The field's allowed range, e.g. `≥ 0`, `> 0, < 1`, `at least 1 item`."""
    words = []
    for item in field.metadata:
        for cls, symbol in ((Ge, "≥"), (Gt, ">"), (Le, "≤"), (Lt, "<")):
            if isinstance(item, cls):
                words.append(f"{symbol} {_value(next(iter(dataclasses.asdict(item).values())))}")
        if isinstance(item, MinLen) and item.min_length:
            unit = "character" if field.annotation is str else "item"
            words.append(f"at least {item.min_length} {unit}{'s' if item.min_length > 1 else ''}")
    return ", ".join(words)


def _value(value: Any) -> str:
    """A value in YAML flow style."""
    if isinstance(value, BaseModel):
        value = value.model_dump()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        if value == SYSTEM_INSTRUCTION:
            return "SYSTEM_INSTRUCTION"
        return value if re.fullmatch(r"[A-Za-z0-9_][\w./+-]*", value) else '"' + value.replace('"', '\\"') + '"'
    if isinstance(value, float):
        short = f"{value:.0e}"
        return short if 0 < abs(value) < 1e-3 and float(short) == value else repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value(v)}" for k, v in value.items()) + "}"
    return "null" if value is None else str(value)


def _doc(cls: type) -> str:
    """A class's own docstring on one line ("" for none, or for a dataclass's generated signature)."""
    doc = cls.__dict__.get("__doc__") or ""
    if not doc or doc.startswith(cls.__name__ + "(") or doc is BaseModel.__doc__:
        return ""
    return " ".join(doc.split())


def kind_summaries() -> dict[str, str]:
    """Kind → its line in nep.predictors.kinds's module docstring (`- ``kind``: what it does.`)."""
    summaries: dict[str, str] = {}
    for item in re.split(r"\n- ", base.__doc__ or "")[1:]:
        names, _, text = item.partition(":")
        text = " ".join(text.split("\n\n")[0].split())
        for name in re.findall(r"``(\w+)``", names):
            summaries[name] = text
    return summaries


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _code(text: str) -> str:
    return f"`{_cell(text)}`" if text else ""


def section_rows(model: type[BaseModel], prefix: str, comments: dict[str, str]) -> list[str]:
    """One table row per leaf key of `model`; nested sections recurse as dotted keys."""
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}.{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel) and field.default_factory:
            doc = _doc(annotation)
            if doc or key in comments:
                rows.append(f"| {_code(key)} | section |  |  | {_cell(field.description or comments.get(key) or doc)} |")
            rows += section_rows(annotation, key, comments)
            continue
        default = field.get_default(call_default_factory=True)
        description = field.description or comments.get(key, "")
        cells = [_code(key), _code(type_name(annotation)), _code(bounds(field)), _code(_value(default)),
                 _cell(description)]
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def predictor_rows() -> list[str]:
    """One row per predictor kind: its required options and every option with its type and default."""
    rows = []
    kinds = registry()
    summaries = kind_summaries()
    for kind in KINDS:
        cls = kinds.get(kind)
        options = []
        defaults = {f.name: f for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else {}
        for name, hint in cls.options().items():
            field = defaults[name]
            if field.default is not dataclasses.MISSING:
                default = f" = {_value(field.default)}"
            elif field.default_factory is not dataclasses.MISSING:
                default = f" = {_value(field.default_factory())}"
            else:
                default = ""
            options.append(f"`{_cell(f'{name}: {type_name(hint)}{default}')}`")
        required = ", ".join(f"`{r}`" for r in cls.required)
        summary = _cell(summaries.get(kind, ""))
        rows.append(f"| `{kind}` | {required} | {', '.join(options) or '—'} | {summary} |")
    return rows


def render(params_yaml: Path = PARAMS_YAML) -> str:
    comments = yaml_comments(params_yaml)
    out = [
        "# params.yaml reference",
        "",
        "<!-- Generated by `python -m nep.commands.reference > docs/params.md`; do not edit by hand. -->",
        "",
        "Every key of `params.yaml`, from its schema (`nep/config/schema.py`, the one home of every default).",
        "Unknown keys are rejected and types are strict; `nep config` checks a file.",
        "Descriptions are the schema's field descriptions, else the key's comment in `params.yaml`.",
        "[← README](../README.md)",
    ]
    for name, field in Params.model_fields.items():
        model = field.annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        out += ["", f"## {name}", ""]
        doc = _doc(model)
        if doc:
            out += [doc, ""]
        out += ["| key | type | allowed | default | description |", "|---|---|---|---|---|"]
        out += section_rows(model, name, comments)
    out += [
        "",
        "## generate.predictors: kinds and options",
        "",
        "Each entry of `generate.predictors` is a mapping with `kind` (below), `needs` (the one path the",
        f"predictor depends on) and the kind's options; reserved keys: {', '.join(f'`{k}`' for k in RESERVED_KEYS)}.",
        "Options are checked by `nep.predictors.kinds.check_predictor` (see [predictors.md](predictors.md)).",
        "Every kind also takes `max_failure_rate: float = 0.0` (0 to 1): the share of the test set whose",
        "generation may fail (an endpoint's error after its retries) before the stage fails and writes nothing,",
        "and `format`: a `process.format` section (`{answer: whole}`) the predictor is asked and read in instead of",
        "the run's (the fair base model asked for the whole next version while the model trains edit blocks).",
        "A predictor's name is letters, digits, `_`, `-` and `.` (not first), at most 64 characters.",
        "",
        "| kind | required | options (type = default) | what |",
        "|---|---|---|---|",
        *predictor_rows(),
    ]
    return "\n".join(out) + "\n"


def main() -> int:
    sys.stdout.write(render())
    return 0


if __name__ == "__main__":
    sys.exit(main())
