"""Imports flow one way, down the floors: a module imports only from its own floor or lower ones.

    top        stages/, nep/commands/, nep/cli.py, nep/__main__.py   (commands and stage entries)
    phases     nep/data, nep/train, nep/predictors, nep/evaluate      (the pipeline's work)
    config     nep/config                                             (params.yaml's schema, presets)
    llm        nep/llm                                                (the LLM client: options in, no params read)
    core       nep/core                                               (edits, examples, prompts, records)
    util       nep/util, nep/__init__.py                              (files, errors, registry, devices)

Within a floor anything goes, except that phases import each other only along ALLOWED (each with
its reason). Every import counts, lazy ones
inside functions too; registry targets ("nep.pkg.module:Class" strings) are imports of the registry's
own floor, so a lower floor cannot register a higher one's class.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import REPO_ROOT

FLOORS = {  # package (or module) -> floor, low to high
    "nep": 0, "nep.util": 0,
    "nep.core": 1,
    "nep.llm": 2,
    "nep.config": 3,
    "nep.data": 4, "nep.train": 4, "nep.predictors": 4, "nep.evaluate": 4,
    "nep.commands": 5, "nep.cli": 5, "nep.__main__": 5, "stages": 5,
}
PHASES = {name for name, floor in FLOORS.items() if floor == 4}
ALLOWED = {
    # posttrain's reward scores candidates with the evaluation's own metrics (nep/evaluate/metrics.py):
    # one definition of each metric, so a reward cannot drift from the score it optimizes
    ("nep.train", "nep.evaluate"),
    # generation loads what finetune saved (nep/train/model.py writes and reads the adapter's format;
    # nep/train/gguf.py resolves a .gguf base model for both)
    ("nep.predictors", "nep.train"),
    # split.repeat_share picks training examples whose next edit repeats their history: the ones
    # `propagate`'s rules reproduce (nep/predictors/propagate.py), scored by Zed's delta chrF
    # (nep/evaluate/zed.py), one definition of each, so the selection means what the baseline does
    ("nep.data", "nep.predictors"),
    ("nep.data", "nep.evaluate"),
}
REGISTRY_TARGET = "nep."


def package(module: str) -> str:
    """The FLOORS key a dotted module belongs to (its longest listed prefix)."""
    parts = module.split(".")
    for n in range(len(parts), 0, -1):
        if ".".join(parts[:n]) in FLOORS:
            return ".".join(parts[:n])
    raise AssertionError(f"{module}: on no floor (add its package to FLOORS in tests/test_layers.py)")


def imported(path: Path) -> set[str]:
    """The nep modules a file imports (anywhere in it), and the modules its registry strings name."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] in ("nep", "stages"))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module.split(".")[0] in ("nep", "stages"):
                found.add(node.module)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
            if text.startswith(REGISTRY_TARGET) and text.count(":") == 1 and " " not in text:
                found.add(text.split(":")[0])
    return found


def modules() -> list[tuple[str, Path]]:
    files = sorted((REPO_ROOT / "nep").rglob("*.py")) + sorted((REPO_ROOT / "stages").glob("*.py"))
    return [(".".join(p.relative_to(REPO_ROOT).with_suffix("").parts), p) for p in files]


def upward(module: str, path: Path) -> list[str]:
    here = package(module)
    bad = []
    for target in sorted(imported(path)):
        there = package(target)
        if there == here or FLOORS[there] < FLOORS[here]:
            continue
        if FLOORS[there] == FLOORS[here] and (here not in PHASES or (here, there) in ALLOWED):
            continue
        bad.append(f"{module} imports {target} ({there}, floor {FLOORS[there]} > {here}, floor {FLOORS[here]})"
                   if FLOORS[there] > FLOORS[here] else f"{module} imports {target} (phase to phase: not in ALLOWED)")
    return bad


@pytest.mark.parametrize(("module", "path"), modules(), ids=lambda v: v if isinstance(v, str) else "")
def test_imports_flow_down(module, path):
    assert not upward(module, path)


def test_an_upward_import_is_caught(tmp_path):
    schema = tmp_path / "schema.py"
    schema.write_text("from nep.predictors import base\n")
    assert upward("nep.config.schema", schema) == [
        "nep.config.schema imports nep.predictors (nep.predictors, floor 4 > nep.config, floor 3)"]
    phase = tmp_path / "metrics.py"
    phase.write_text("def f():\n    from nep.data.split import split\n")
    assert upward("nep.evaluate.metrics", phase) == ["nep.evaluate.metrics imports nep.data.split (phase to phase: not in ALLOWED)"]
    registry = tmp_path / "client.py"
    registry.write_text('KINDS = {"x": "nep.evaluate.judges:Judge"}\n')
    assert upward("nep.llm.client", registry)


def test_every_phase_and_package_is_on_a_floor():
    packages = {f"nep.{p.name}" for p in (REPO_ROOT / "nep").iterdir() if (p / "__init__.py").exists()}
    assert packages <= set(FLOORS), sorted(packages - set(FLOORS))
    assert {"nep.data", "nep.train", "nep.predictors", "nep.evaluate"} == PHASES
