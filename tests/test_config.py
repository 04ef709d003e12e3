"""dvc.yaml and params.yaml agree with the code: commands, deps, imported modules and params."""

from __future__ import annotations

import ast
import functools
import re
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT

DVC_YAML = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())
PARAMS = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
STAGE_NAMES = list(DVC_YAML["stages"])
# nep/params.py only reads params.yaml, whose values DVC tracks itself (per declared key).
NOT_DEPS = {"nep/params.py", "nep/__init__.py"}


@functools.cache
def dvc_stages() -> list:
    """The pipeline's stages as DVC resolves them (foreach expanded), in dvc.yaml order."""
    from dvc.repo import Repo

    with Repo(str(REPO_ROOT)) as repo:
        return list(repo.index.stages)


def resolved(name: str) -> list:
    return [s for s in dvc_stages() if s.name == name or s.name.startswith(f"{name}@")]


def stage_module(cmd: str) -> Path:
    match = re.match(r"python -m (stages\.\w+)", cmd)
    assert match, f"command {cmd!r} is not `python -m stages.<name>`"
    return REPO_ROOT / (match.group(1).replace(".", "/") + ".py")


def nep_imports(path: Path) -> set[str]:
    """The nep modules a file imports, anywhere in it (lazy imports inside functions too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("nep."))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "nep":
                found.update(f"nep.{a.name}" for a in node.names)
            elif node.module.startswith("nep."):
                found.add(node.module)
    return {f"{m.replace('.', '/')}.py" for m in found}


def transitive_nep_imports(path: Path) -> set[str]:
    seen: set[str] = set()
    todo = [path]
    while todo:
        for module in nep_imports(todo.pop()) - seen:
            seen.add(module)
            if (REPO_ROOT / module).exists():
                todo.append(REPO_ROOT / module)
    return seen


def load_params_sections(path: Path) -> list[str | None]:
    """Sections passed to load_params(...) in a file (None for a call that reads everything)."""
    sections: list[str | None] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name == "load_params":
                arg = node.args[0] if node.args else None
                sections.append(arg.value if isinstance(arg, ast.Constant) else None)
    return sections


def test_every_params_section_is_read_by_a_stage():
    assert set(PARAMS) <= set(STAGE_NAMES), "params.yaml sections are named after stages"
    declared = {p.split(".")[0] for s in dvc_stages() for d in s.deps if hasattr(d, "params") for p in d.params}
    assert set(PARAMS) <= declared


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_stage_command_module_exists(name: str):
    for stage in resolved(name):
        module = stage_module(stage.cmd)
        assert module.exists(), f"{stage.addressing}: {module.relative_to(REPO_ROOT)} does not exist"
        assert str(module.relative_to(REPO_ROOT)) in {d.def_path for d in stage.deps}


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_stage_deps_exist_or_come_from_earlier_stages(name: str):
    earlier: list[str] = []
    for stage in dvc_stages():
        if stage.name == name or stage.name.startswith(f"{name}@"):
            break
        earlier.extend(o.def_path for o in stage.outs)
    for stage in resolved(name):
        for dep in stage.deps:
            if hasattr(dep, "params"):
                continue
            path = dep.def_path
            produced = any(
                path == out or path.startswith(f"{out}/") or out.startswith(f"{path}/") for out in earlier
            )
            is_code = path.endswith(".py")
            assert (REPO_ROOT / path).exists() if is_code else (produced or (REPO_ROOT / path).exists()), (
                f"{stage.addressing}: dep {path} " + ("does not exist" if is_code else "is no earlier stage's output")
            )


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_stage_deps_cover_the_nep_modules_it_imports(name: str):
    for stage in resolved(name):
        deps = {d.def_path for d in stage.deps}
        needed = transitive_nep_imports(stage_module(stage.cmd)) - NOT_DEPS
        missing = sorted(needed - deps)
        assert not missing, f"{stage.addressing}: imports {missing} but does not declare them in dvc.yaml deps"


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_stage_declares_the_params_it_reads(name: str):
    for stage in resolved(name):
        declared = [p for d in stage.deps if hasattr(d, "params") for p in d.params]
        module = stage_module(stage.cmd)
        files = [module, *(REPO_ROOT / m for m in transitive_nep_imports(module))]
        for path in (f for f in files if f.exists()):
            for section in load_params_sections(path):
                assert section is not None, f"{path.name}: load_params() without a section reads undeclared params"
                covered = any(p == section or p.startswith(f"{section}.") for p in declared)
                assert covered, f"{stage.addressing}: reads params '{section}' but dvc.yaml does not declare it"
