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
# Modules a stage imports that no stage declares, each because it cannot change an output. Everything
# else a stage imports is a dvc.yaml dependency of it: nep/config/schema.py (defaults, derived settings
# such as Finetune.effective_max_steps) and nep/config/params.py (how params.yaml's text becomes values) too.
NOT_DEPS = {
    # only words a schema problem (nep.config.schema.format_errors): a stage that gets to write
    # outputs never calls it, and one that fails writes none
    "nep/config/messages.py",
    # only accepts or refuses `generate.predictors` entries (names, kinds, `needs`); it changes no
    # value, so a stage that runs sees the same params whatever it says
    "nep/config/entries.py",
    # imports nep.util.device (a dep of every stage, under nep/util) for its side effect: OpenMP's
    # wait policy, how idle threads wait (time, not results); it holds no other code
    "nep/__init__.py",
}


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


REGISTRY_TARGET = re.compile(r"^(nep(?:\.\w+)+):\w+$")


def _module_file(dotted: str) -> str | None:
    """nep.a.b -> nep/a/b.py (a module) or nep/a/b/__init__.py (a package); None for an attribute."""
    base = REPO_ROOT / dotted.replace(".", "/")
    if base.with_suffix(".py").exists():
        return f"{dotted.replace('.', '/')}.py"
    if (base / "__init__.py").exists():
        return f"{dotted.replace('.', '/')}/__init__.py"
    return None


def nep_imports(path: Path) -> set[str]:
    """The nep modules a file imports, anywhere in it (lazy imports inside functions too), and the
    modules its registries name ("nep.pkg.module:Attribute" strings, imported when that name is used)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.startswith("nep."))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            if node.module == "nep" or node.module.startswith("nep."):
                found.add(node.module)
                # `from nep.pkg import module` imports a module; `from nep.pkg import name` an attribute
                found.update(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = REGISTRY_TARGET.match(node.value)
            if match:
                found.add(match.group(1))
    files = {_module_file(m) for m in found}
    # package __init__ files hold a docstring only (test_package_inits_hold_no_code)
    return {f for f in files if f and not (f.endswith("/__init__.py") and f != "nep/__init__.py")}


def transitive_nep_imports(path: Path) -> set[str]:
    seen: set[str] = set()
    todo = [path]
    while todo:
        for module in nep_imports(todo.pop()) - seen:
            seen.add(module)
            if (REPO_ROOT / module).exists() and module not in NOT_DEPS:
                todo.append(REPO_ROOT / module)
    return seen


def covers(dep: str, module: str) -> bool:
    return module == dep or module.startswith(f"{dep.rstrip('/')}/")


def code_deps(stage) -> list[str]:
    return [d.def_path for d in stage.deps if not hasattr(d, "params") and d.def_path.startswith(("nep", "stages"))]


def test_package_inits_hold_no_code():
    for init in (REPO_ROOT / "nep").glob("*/__init__.py"):
        body = ast.parse(init.read_text()).body
        assert all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body), init


def load_params_sections(path: Path) -> list[str | None]:
    """Sections passed to load_params(...) in a file (None for a call that reads everything)."""
    sections: list[str | None] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Call):
            func = node.func
            name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)
            if name in ("load_params", "load_section"):
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
        deps = code_deps(stage)
        needed = transitive_nep_imports(stage_module(stage.cmd)) - NOT_DEPS
        missing = sorted(m for m in needed if not any(covers(d, m) for d in deps))
        assert not missing, f"{stage.addressing}: imports {missing} but does not declare them in dvc.yaml deps"


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_stage_code_deps_are_code_it_can_use(name: str):
    """No over-triggering: every declared code file is imported, every declared folder holds a module
    the stage imports (so e.g. the SFT loop never re-runs generate)."""
    for stage in resolved(name):
        needed = transitive_nep_imports(stage_module(stage.cmd)) | {str(stage_module(stage.cmd).relative_to(REPO_ROOT))}
        unused = [d for d in code_deps(stage) if not any(covers(d, m) for m in needed)]
        assert not unused, f"{stage.addressing}: declares {unused} but imports nothing from them"


@pytest.mark.parametrize("name", STAGE_NAMES)
def test_stage_declares_the_params_it_reads(name: str):
    for stage in resolved(name):
        declared = [p for d in stage.deps if hasattr(d, "params") for p in d.params]
        module = stage_module(stage.cmd)
        # nep/config/params.py defines load_params (its calls pass a caller's section along)
        files = [module, *(REPO_ROOT / m for m in transitive_nep_imports(module) - NOT_DEPS - {"nep/config/params.py"})]
        for path in (f for f in files if f.exists()):
            for section in load_params_sections(path):
                assert section is not None, f"{path.name}: load_params() without a section reads undeclared params"
                covered = any(p == section or p.startswith(f"{section}.") for p in declared)
                assert covered, f"{stage.addressing}: reads params '{section}' but dvc.yaml does not declare it"


# ---------------------------------------------------------------- the params schema (nep/config/schema.py)
def test_params_yaml_mirrors_the_schema():
    """Every key of params.yaml is in the schema, and the schema's defaults are params.yaml's values
    (one home for each default; params.yaml mirrors it)."""
    from nep.config.schema import defaults, validate

    assert validate(PARAMS) == PARAMS
    assert defaults() == PARAMS


def check_error(params: dict, expected: str, tmp_path: Path) -> None:
    """load_params of any section stops with exactly `expected` (one line) for `params`."""
    from nep.config.params import load_params
    from nep.config.schema import ParamsError

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**PARAMS, **params}, sort_keys=False))
    for section in ("ingest", "evaluate"):
        with pytest.raises(ParamsError) as info:
            load_params(section, path)
        assert str(info.value) == f"{path}: {expected}"


@pytest.mark.parametrize(
    ("section", "change", "expected"),
    [
        ("label", {"concurency": 4}, "label.concurency: unknown key (did you mean label.concurrency?)"),
        ("filter", {"max_chunk_lines": "abc"}, "filter.max_chunk_lines: 'abc' is not an integer"),
        ("filter", {"max_chunk_lines": -1}, "filter.max_chunk_lines: -1 is out of range (allowed: ≥ 0)"),
        ("filter", {"edit_types": ["add", "modify"]},
         "filter.edit_types[1]: 'modify' is not allowed (allowed: 'add', 'delete' or 'replace')"),
        ("split", {"test_fraction": 1.5}, "split.test_fraction: 1.5 is out of range (allowed: < 1.0)"),
        ("finetune", {"merge": "yes"}, "finetune.merge: 'yes' is not true or false"),
        ("finetune", {"tiny": {"vocab": 8}}, "finetune.tiny.vocab: unknown key (did you mean finetune.tiny.vocab_size?)"),
        ("ingest", {"source": "svn"}, "ingest.source: 'svn' is not allowed (allowed: 'git', 'jsonl', 'hf' or 'patches')"),
    ],
)
def test_a_bad_param_stops_every_stage_with_one_line(section, change, expected, tmp_path):
    check_error({section: {**PARAMS[section], **change}}, expected, tmp_path)


def test_an_unknown_section_is_named(tmp_path):
    check_error({"filtre": {}}, "filtre: unknown key (did you mean filter?)", tmp_path)


def test_every_predictor_entry_is_checked_by_every_stage(tmp_path):
    predictors = {**PARAMS["generate"]["predictors"], "bad": {"kind": "nope", "needs": "data/split/test.jsonl"}}
    from nep.config.params import load_params
    from nep.config.schema import ParamsError

    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({**PARAMS, "generate": {**PARAMS["generate"], "predictors": predictors}}))
    with pytest.raises(ParamsError, match=r"generate\.predictors\.bad.*'nope'") as info:
        load_params("ingest", path)
    assert "\n" not in str(info.value)


def test_defaults_are_filled_in(tmp_path):
    from nep.config.params import load_params

    path = tmp_path / "params.yaml"
    path.write_text("filter: {max_chars: 100}\n")
    assert load_params("filter", path) == {**PARAMS["filter"], "max_chars": 100}
    assert load_params("finetune", path)["tiny"] == PARAMS["finetune"]["tiny"]


def test_a_stage_exits_with_the_line_and_no_traceback(tmp_path):
    """A stage, unchanged, stops on a bad param before doing work: exit 1, one line, no traceback."""
    import subprocess
    import sys

    (tmp_path / "params.yaml").write_text(yaml.safe_dump({**PARAMS, "label": {**PARAMS["label"], "concurency": 4}}))
    result = subprocess.run(
        [sys.executable, "-c", "from nep.config.params import load_params; load_params('ingest'); print('ran')"],
        cwd=tmp_path, capture_output=True, text=True, env={**__import__("os").environ, "PYTHONPATH": str(REPO_ROOT)},
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.strip() == "params.yaml: label.concurency: unknown key (did you mean label.concurrency?)"


def test_the_check_command(tmp_path, capsys):
    from nep.commands.config import main

    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(yaml.safe_dump(PARAMS))
    bad.write_text(yaml.safe_dump({**PARAMS, "filter": {**PARAMS["filter"], "max_chunk_lines": "abc", "min_chunk": 2}}))
    assert main([str(good)]) == 0
    assert capsys.readouterr().out.strip() == f"{good}: OK"
    assert main([str(bad)]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        f"{bad}: filter.max_chunk_lines: 'abc' is not an integer",
        f"{bad}: filter.min_chunk: unknown key (did you mean filter.min_chunks?)",
    ]


def test_a_checked_file_is_remembered_until_its_bytes_change(tmp_path, monkeypatch):
    """The next stage reading the same bytes skips the schema; any change is checked again."""
    import nep.config.schema
    from nep.config.params import load_params
    from nep.config.schema import ParamsError

    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(PARAMS, sort_keys=False))
    first = load_params(None, path)
    assert (tmp_path / "cache/params.checked.json").exists()

    def no_schema(*args, **kwargs):
        raise AssertionError("the schema ran for bytes already checked")

    with monkeypatch.context() as m:
        m.setattr(nep.config.schema, "validate", no_schema)
        assert load_params(None, path) == first
        order = list(PARAMS["generate"]["predictors"])  # the file's order, which evaluate and report keep
        assert list(load_params("generate", path)["predictors"]) == order != sorted(order)
        assert load_params("filter", path) == first["filter"]
    path.write_text(yaml.safe_dump({**PARAMS, "label": {**PARAMS["label"], "concurency": 4}}))
    with pytest.raises(ParamsError, match="label.concurency: unknown key"):
        load_params("ingest", path)


def test_changing_a_derived_setting_makes_dvc_rerun_the_stage(tmp_path, monkeypatch):
    """Finetune's step cap is schema logic (Finetune.effective_max_steps), not a params value: a
    change to it must make `dvc status` name finetune as changed (so `dvc repro` re-runs it)."""
    from conftest import copy_project
    from dvc.repo import Repo

    project = copy_project(tmp_path / "project")
    (project / "data/split").mkdir(parents=True)
    (project / "data/split/train.jsonl").write_text("{}\n")  # stand-ins for finetune's input and outputs
    (project / "models/finetune").mkdir(parents=True)
    (project / "models/finetune/adapter").write_text("x\n")
    (project / "metrics/finetune/plots/metrics").mkdir(parents=True, exist_ok=True)
    (project / "metrics/finetune/metrics.json").write_text("{}\n")
    monkeypatch.chdir(project)  # DVC resolves a stage's paths from the working directory
    config = project / ".dvc/config"  # a copy without git
    config.write_text(config.read_text().replace("[core]\n", "[core]\n    no_scm = true\n", 1))
    with Repo(str(project)) as repo:
        repo.commit("finetune", force=True)  # the lock records finetune's deps as they are
        assert repo.status(["finetune"]) == {}
    schema = project / "nep/config/schema.py"
    logic = "        return min(caps, default=0)\n"
    assert logic in schema.read_text(), "effective_max_steps changed: update this test's edit"
    schema.write_text(schema.read_text().replace(logic, "        return min(caps, default=1)\n"))
    with Repo(str(project)) as repo:
        assert repo.status(["finetune"]) == {"finetune": [{"changed deps": {"nep/config/schema.py": "modified"}}]}


def test_the_schema_names_every_predictor_kind():
    """The schema checks `kind` by name (it imports no predictor); nep.predictors.kinds.KINDS maps
    the same names, in the same order, to their classes."""
    from nep.config.entries import PREDICTOR_KINDS
    from nep.predictors.kinds import KINDS

    assert tuple(KINDS) == PREDICTOR_KINDS
