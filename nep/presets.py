"""Named configurations (presets/<name>.yaml), deep-merged over params.yaml.

    python -m nep.presets paper              # merge presets/paper.yaml into params.yaml, then `dvc repro`
    eval "dvc exp run $(python -m nep.presets paper --set-args)"   # the same, as an experiment
    python -m nep.presets offline            # restore the committed default params.yaml (from git)
    python -m nep.presets --list

A preset holds only the keys it changes. Every key must exist in params.yaml with a value of the
same type (`check_preset`), except under open maps such as `generate.predictors`, whose entries
are named by the user. Writing keeps params.yaml's comments (ruamel.yaml round trip).
"""

from __future__ import annotations

import argparse
import io
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

from nep.params import load_yaml

PRESETS_DIR = Path("presets")
DEFAULT = "offline"  # the committed params.yaml itself
# Maps whose keys are names the user picks (each entry still needs `kind` and `needs`).
OPEN_MAPS = {"generate.predictors": ("kind", "needs")}


class PresetError(ValueError):
    """A preset that does not fit params.yaml."""


def available(presets_dir: Path = PRESETS_DIR) -> list[str]:
    return sorted([DEFAULT, *(p.stem for p in presets_dir.glob("*.yaml"))])


def load_preset(name: str, presets_dir: Path = PRESETS_DIR) -> dict[str, Any]:
    path = presets_dir / f"{name}.yaml"
    if not path.exists():
        raise PresetError(f"{path}: no such preset (available: {', '.join(available(presets_dir))})")
    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise PresetError(f"{path}: a preset is a mapping of params.yaml sections")
    return data


def _type_name(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _same_type(default: Any, value: Any) -> bool:
    if default is None:
        return True  # null defaults ("not set") accept any value
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


def check_preset(preset: dict[str, Any], params: dict[str, Any], prefix: str = "") -> list[str]:
    """Problems of `preset` against the params schema `params` (empty list: it fits)."""
    errors: list[str] = []
    for key, value in preset.items():
        where = f"{prefix}{key}"
        if prefix.rstrip(".") in OPEN_MAPS:
            required = OPEN_MAPS[prefix.rstrip(".")]
            entry = {**(params.get(key) or {}), **(value or {})} if isinstance(value, dict) else value
            if not isinstance(entry, dict) or any(k not in entry for k in required):
                errors.append(f"{where}: needs a mapping with {', '.join(required)}")
            continue
        if key not in params:
            errors.append(f"{where}: not in params.yaml")
        elif not _same_type(params[key], value):
            errors.append(f"{where}: {_type_name(value)}, but params.yaml has {_type_name(params[key])}")
        elif isinstance(value, dict) and isinstance(params[key], dict):
            errors.extend(check_preset(value, params[key], f"{where}."))
    return errors


def deep_merge(base: Any, overlay: dict[str, Any]) -> Any:
    """Merge `overlay` into the mapping `base` in place (mappings recurse; anything else replaces
    a different value). With ruamel.yaml nodes, replaced and added values keep the flow style of
    the ones they stand for or beside."""
    for key, value in overlay.items():
        old = base.get(key)
        if isinstance(value, dict) and isinstance(old, dict):
            deep_merge(old, value)
        elif key not in base or old != value:
            like = old if key in base else next(iter(base.values()), None)
            base[key] = _styled_like(value, like)
    return base


def _styled_like(value: Any, like: Any) -> Any:
    """`value` as a flow-style ruamel node when `like` is one, else `value` itself."""
    if not getattr(getattr(like, "fa", None), "flow_style", lambda: False)():
        return value
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    node = CommentedMap(value) if isinstance(value, dict) else CommentedSeq(value) if isinstance(value, list) else None
    if node is None:
        return value
    node.fa.set_flow_style()
    return node


def float_text(value: float) -> str:
    """A float as YAML 1.1 readers (PyYAML) parse it back: 1e-05 → 1.0e-05 (1e-05 would be a str)."""
    text = repr(value)
    if text in ("inf", "-inf", "nan"):
        return {"inf": ".inf", "-inf": "-.inf", "nan": ".nan"}[text]
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text


def _hydra_value(value: Any) -> str:
    """A value in the override grammar of `dvc exp run -S` (Hydra's)."""
    if isinstance(value, str):
        if re.fullmatch(r"[A-Za-z_][\w/\-+.@:]*", value) and value.lower() not in ("true", "false", "null"):
            return value  # a plain string needs no quotes
        return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
    if isinstance(value, list):
        return "[" + ",".join(_hydra_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ",".join(f"{k}:{_hydra_value(v)}" for k, v in value.items()) + "}"
    if isinstance(value, float):
        return float_text(value)
    return json.dumps(value)  # ints, true/false, null


def set_args(preset: dict[str, Any], params: dict[str, Any], prefix: str = "") -> list[str]:
    """`-S` overrides applying `preset` to `params` (`+key=` for keys params.yaml lacks)."""
    args: list[str] = []
    for key, value in preset.items():
        where = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(params.get(key), dict):
            args.extend(set_args(value, params[key], f"{where}."))
        elif key not in params or params[key] != value:
            args.append(f"{'' if key in params else '+'}{where}={_hydra_value(value)}")
    return args


def _represent_float(representer: Any, value: float) -> Any:
    return representer.represent_scalar("tag:yaml.org,2002:float", float_text(value))


def apply_preset(name: str, params_path: Path = Path("params.yaml"), presets_dir: Path = PRESETS_DIR) -> None:
    """Write params.yaml with the preset merged in (or restored from git for the default)."""
    if name == DEFAULT:
        committed = subprocess.run(
            ["git", "show", f"HEAD:./{params_path.name}"],
            cwd=params_path.parent, capture_output=True, text=True,
        )
        if committed.returncode != 0:
            raise PresetError(f"cannot restore {params_path} from git: {committed.stderr.strip()}")
        params_path.write_text(committed.stdout)
        return
    from ruamel.yaml import YAML
    from ruamel.yaml.representer import RoundTripRepresenter

    class FloatTextRepresenter(RoundTripRepresenter):
        """Floats as float_text; a subclass, since add_representer changes the class it is called on."""

    FloatTextRepresenter.add_representer(float, _represent_float)
    preset = load_preset(name, presets_dir)
    rt = YAML()
    rt.Representer = FloatTextRepresenter
    rt.preserve_quotes = True
    rt.width = 4096
    params = rt.load(params_path.read_text())
    errors = check_preset(preset, load_yaml(params_path) or {})
    if errors:
        raise PresetError(f"{presets_dir / name}.yaml does not fit {params_path}:\n  " + "\n  ".join(errors))
    deep_merge(params, preset)
    out = io.StringIO()
    rt.dump(params, out)
    params_path.write_text(out.getvalue())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nep.presets", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", nargs="?", help=f"preset name, or '{DEFAULT}' for the committed default")
    parser.add_argument("--set-args", action="store_true", help="print `dvc exp run -S` overrides instead")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--list", action="store_true", help="list the presets")
    args = parser.parse_args(argv)
    if args.list or not args.name:
        print("\n".join(available()))
        return
    if args.set_args:
        if args.name == DEFAULT:
            parser.error("--set-args needs a preset file; the default is params.yaml itself")
        params = load_yaml(args.params) or {}
        preset = load_preset(args.name)
        if errors := check_preset(preset, params):
            raise SystemExit("preset does not fit params.yaml:\n  " + "\n  ".join(errors))
        print(" ".join(f"-S {shlex.quote(a)}" for a in set_args(preset, params)))
        return
    apply_preset(args.name, args.params)
    print(f"{args.params}: applied preset '{args.name}'; run `dvc repro` (or `dvc exp run`)")


if __name__ == "__main__":
    main()
