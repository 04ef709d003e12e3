"""Named configurations (presets/<name>.yaml), each applied over the COMMITTED params.yaml.

    nep presets paper              # params.yaml = git HEAD's params.yaml + presets/paper.yaml
    nep presets offline            # params.yaml = git HEAD's params.yaml (the default)
    eval "dvc exp run $(nep presets paper --set-args)"   # the same, as an experiment
    nep presets --list

A preset is a whole configuration: the committed default with the preset's keys merged in
(mappings recurse; each `generate.predictors` entry is replaced whole, so options of one kind never
mix with another's, and an entry set to null is removed). The workspace's params.yaml plays no part in the result, so a local endpoint
or any other edit left in it never leaks into a preset. Because applying one replaces the
workspace's params.yaml, uncommitted edits that the result would not keep stop the command (it
names them) unless `--force` is given. The result is checked against the schema (nep/config/schema.py)
before anything is written; writing keeps params.yaml's comments (ruamel.yaml round trip).
"""

from __future__ import annotations

import argparse
import copy
import io
import json
import re
import shlex
import subprocess
from pathlib import Path
from typing import Any

from nep.config.params import load_yaml, parse_yaml
from nep.config.schema import ParamsError, validate
from nep.util.errors import NepError

PRESETS_DIR = Path("presets")
DEFAULT = "offline"  # the committed params.yaml itself
# Maps whose entries are named by the user and replaced whole by a preset.
OPEN_MAPS = ("generate.predictors",)



def available(presets_dir: Path = PRESETS_DIR) -> list[str]:
    return sorted([DEFAULT, *(p.stem for p in presets_dir.glob("*.yaml"))])


def load_preset(name: str, presets_dir: Path = PRESETS_DIR) -> dict[str, Any]:
    if name == DEFAULT:
        return {}
    path = presets_dir / f"{name}.yaml"
    if not path.exists():
        raise NepError(f"{path}: no such preset (available: {', '.join(available(presets_dir))})")
    data = load_yaml(path) or {}
    if not isinstance(data, dict):
        raise NepError(f"{path}: a preset is a mapping of params.yaml sections")
    return data


def deep_merge(base: Any, overlay: dict[str, Any], prefix: str = "") -> Any:
    """Merge `overlay` into the mapping `base` in place: mappings recurse, except the entries of
    OPEN_MAPS, which are replaced whole; anything else replaces a different value. With ruamel.yaml
    nodes, replaced and added values keep the flow style of the ones they stand for or beside."""
    for key, value in overlay.items():
        old = base.get(key)
        where = f"{prefix}{key}"
        if value is None and prefix.rstrip(".") in OPEN_MAPS:
            base.pop(key, None)  # `name: null` removes an entry (e.g. a predictor the preset does not run)
        elif isinstance(value, dict) and isinstance(old, dict) and prefix.rstrip(".") not in OPEN_MAPS:
            deep_merge(old, value, f"{where}.")
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


def check_preset(preset: dict[str, Any], base: dict[str, Any]) -> list[str]:
    """Problems of the configuration `preset` merged over `base` makes, one line each per the
    params schema (nep/config/schema.py); an empty list when it fits."""

    try:
        validate(deep_merge(copy.deepcopy(base), preset), "preset")
    except ParamsError as e:
        return [line.removeprefix("preset: ") for line in str(e).splitlines()]
    return []


def changed_keys(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two params mappings (lists compare whole)."""
    if not (isinstance(old, dict) and isinstance(new, dict)):
        return [] if old == new else [prefix.rstrip(".")]
    keys: list[str] = []
    for key in [*old, *(k for k in new if k not in old)]:
        if key not in old or key not in new:
            keys.append(f"{prefix}{key}")
        else:
            keys.extend(changed_keys(old[key], new[key], f"{prefix}{key}."))
    return keys


def load_yaml_text(text: str) -> dict[str, Any]:
    return parse_yaml(text) or {}


def _get(params: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(params, dict) or part not in params:
            return "(absent)"
        params = params[part]
    return params


def committed_text(params_path: Path) -> str:
    """params.yaml as committed at git HEAD."""
    result = subprocess.run(
        ["git", "show", f"HEAD:./{params_path.name}"], cwd=params_path.parent, capture_output=True, text=True
    )
    if result.returncode != 0:
        raise NepError(f"cannot read the committed {params_path} from git: {result.stderr.strip()}")
    return result.stdout


def _float_text(value: float) -> str:
    """A float as YAML 1.1 readers (PyYAML) parse it back: 1e-05 → 1.0e-05 (1e-05 would be a str)."""
    text = repr(value)
    if text in ("inf", "-inf", "nan"):
        return {"inf": ".inf", "-inf": "-.inf", "nan": ".nan"}[text]
    mantissa, e, exponent = text.partition("e")
    return f"{mantissa}.0e{exponent}" if e and "." not in mantissa else text


def render(name: str, base_text: str, presets_dir: Path = PRESETS_DIR) -> str:
    """The params.yaml text of preset `name` over `base_text` (comments kept), checked."""
    preset = load_preset(name, presets_dir)
    if errors := check_preset(preset, load_yaml_text(base_text)):
        raise NepError(f"{presets_dir / name}.yaml does not fit params.yaml:\n  " + "\n  ".join(errors))
    if not preset:
        return base_text
    from ruamel.yaml import YAML
    from ruamel.yaml.representer import RoundTripRepresenter

    class FloatTextRepresenter(RoundTripRepresenter):
        """Floats as _float_text; a subclass, since add_representer changes the class it is called on."""

    FloatTextRepresenter.add_representer(
        float, lambda r, v: r.represent_scalar("tag:yaml.org,2002:float", _float_text(v))
    )
    rt = YAML()
    rt.Representer = FloatTextRepresenter
    rt.preserve_quotes = True
    rt.width = 4096
    params = rt.load(base_text)
    deep_merge(params, preset)
    out = io.StringIO()
    rt.dump(params, out)
    return out.getvalue()


def lost_edits(workspace: dict[str, Any], committed: dict[str, Any], target: dict[str, Any]) -> list[str]:
    """Uncommitted edits (workspace vs committed) that `target` would not keep, one line each."""
    lines = []
    for key in changed_keys(committed, workspace):
        if _get(workspace, key) != _get(target, key):
            lines.append(f"{key}: {_get(workspace, key)!r} (uncommitted) → {_get(target, key)!r}")
    return lines


def _guard(params_path: Path, name: str, target_text: str, presets_dir: Path, force: bool) -> None:
    """Refuse (NepError naming the keys) when replacing the workspace's params.yaml by
    `target_text` would lose uncommitted edits of a value; a workspace holding another preset as it
    is loses nothing (it can be applied again). The comparison is of values, not text: comments
    and layout (which `dvc exp run -S` rewrites) are never an edit to keep."""
    if force:
        return
    base_text = committed_text(params_path)
    workspace, base, target = (load_yaml_text(t) for t in (params_path.read_text(), base_text, target_text))
    if workspace in (base, target):
        return
    for other in available(presets_dir):
        try:
            if load_yaml_text(render(other, base_text, presets_dir)) == workspace:
                return
        except NepError:
            continue
    lines = lost_edits(workspace, base, target)
    if not lines:
        return
    raise NepError(
        f"{params_path} has uncommitted edits that preset '{name}' would overwrite:\n  " + "\n  ".join(lines)
        + f"\nCommit them (git commit {params_path.name}) to keep them, reset them (git checkout "
        f"{params_path.name}), or rerun with --force to discard them."
    )


def apply_preset(
    name: str, params_path: Path = Path("params.yaml"), presets_dir: Path = PRESETS_DIR, *, force: bool = False
) -> None:
    """Write params.yaml = the committed params.yaml with preset `name` merged in."""
    target = render(name, committed_text(params_path), presets_dir)
    _guard(params_path, name, target, presets_dir, force)
    params_path.write_text(target)


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
        return _float_text(value)
    return json.dumps(value)  # ints, true/false, null


def set_args(target: dict[str, Any], current: dict[str, Any], prefix: str = "") -> list[str]:
    """`-S` overrides turning params `current` into `target` (`+key=` adds, `~key` removes)."""
    args: list[str] = []
    for key, value in target.items():
        where = f"{prefix}{key}"
        if isinstance(value, dict) and isinstance(current.get(key), dict):
            args.extend(set_args(value, current[key], f"{where}."))
        elif key not in current or current[key] != value:
            args.append(f"{'' if key in current else '+'}{where}={_hydra_value(value)}")
    args.extend(f"~{prefix}{key}" for key in current if key not in target)
    return args


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="nep presets", description=__doc__.split("\n\n")[0])
    parser.add_argument("name", nargs="?", help=f"preset name, or '{DEFAULT}' for the committed default")
    parser.add_argument("--set-args", action="store_true", help="print `dvc exp run -S` overrides instead")
    parser.add_argument("--force", action="store_true", help="discard uncommitted edits of params.yaml")
    parser.add_argument("--params", type=Path, default=Path("params.yaml"))
    parser.add_argument("--list", action="store_true", help="list the presets")
    args = parser.parse_args(argv)
    if args.list or not args.name:
        print("\n".join(available()))
        return
    try:
        target = render(args.name, committed_text(args.params))
        _guard(args.params, args.name, target, PRESETS_DIR, args.force)
    except NepError as e:
        raise SystemExit(str(e)) from None
    if args.set_args:
        overrides = set_args(load_yaml_text(target), load_yaml(args.params) or {})
        print(" ".join(f"-S {shlex.quote(a)}" for a in overrides))
        return
    args.params.write_text(target)
    print(f"{args.params}: preset '{args.name}' applied over the committed default; run `dvc repro`")


if __name__ == "__main__":
    main()
