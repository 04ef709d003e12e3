"""The documentation stays true: commands in README.md, docs/*.md and benchmarks/README.md are
extracted and checked where that is cheap and offline.

- every `python -m X` names a module that exists, and `--help` works where X parses arguments;
- every `python FILE` and `pip install -r FILE` names a file that exists;
- every `dvc repro STAGE` names a stage of dvc.yaml (`generate@NAME`: a predictor of params.yaml, one
  the docs add with `+generate.predictors.NAME`, or an upper-case placeholder);
- every `dvc exp run -S ...` in a code block gives a params.yaml the schema accepts, and where the
  docs show the error it prints (`$ command` followed by its output), exactly that error;
- every path of this repository the text names (`nep/data/filter.py`, `tests/x.py::test_y`) exists,
  every dotted `nep.` name imports, every relative link and anchor resolves;
- a command in a code block that needs a GPU, the hub, an API key or the network says so with a
  `# needs: ...` comment (on its line, or alone before the block's first command); the patterns
  below find the commands that must carry one (inline commands in the prose say it in the text);
- the front page stays at most 250 lines, links every page of docs/, and holds CI's command verbatim;
- docs/params.md is what `python -m nep.commands.reference` prints.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT

from nep.commands.reference import split_comment

FRONT_PAGE = REPO_ROOT / "README.md"
PAGES = [FRONT_PAGE, *sorted((REPO_ROOT / "docs").glob("*.md")), REPO_ROOT / "benchmarks" / "README.md",
         REPO_ROOT / "CHANGELOG.md"]
MAX_FRONT_PAGE_LINES = 250

# What a command needs, and how to recognise it. A command matching a pattern must name that need
# in its `# needs:` comment.
NEEDS_PATTERNS: dict[str, list[str]] = {
    "GPU": [r"\bvllm serve\b", r"requirements-gpu\.txt", r"backend=unsloth", r"--num_machines",
            r"finetune\.base_model=Qwen/"],
    "hub": [r"\bQwen/", r"lurf21/", r"bigcode/", r"presets paper\b"],
    "key": [r"backend=openai(?!.*base_url=http://127\.0\.0\.1)", r"OPENAI_API_KEY=", r"presets paper\b"],
    "network": [r"s3://", r"\bdvc (push|pull)\b"],
}
PLACEHOLDER = re.compile(r"^(<[^>]+>|[A-Z][A-Z0-9_]*)$")


@dataclass
class Command:
    page: str
    line: int
    text: str
    needs: set[str] = field(default_factory=set)
    in_block: bool = True
    output: list[str] = field(default_factory=list)  # the lines the docs show it printing

    def __str__(self) -> str:
        return f"{self.page}:{self.line}: {self.text}"


def needs_of(comment: str) -> set[str]:
    match = re.search(r"needs:\s*([^.;]*)", comment)
    return {w.strip() for w in re.split(r"[,\s]+", match.group(1)) if w.strip()} if match else set()


def blocks(text: str) -> list[tuple[str, int, list[str]]]:
    """(language, line number of its first line, lines) of every fenced code block."""
    found, current, lang, start = [], None, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        fence = re.match(r"^\s*```(\w*)\s*$", line)
        if fence and current is None:
            current, lang, start = [], fence.group(1), number + 1
        elif fence:
            found.append((lang, start, current))
            current = None
        elif current is not None:
            current.append(line)
    return found


def page_commands(path: Path) -> list[Command]:
    text = path.read_text(encoding="utf-8")
    page = str(path.relative_to(REPO_ROOT))
    commands: list[Command] = []
    for lang, start, lines in blocks(text):
        if lang in ("bash", "sh", "shell"):
            block_needs: set[str] = set()
            pending, first = "", None
            for offset, raw in enumerate(lines):
                code, comment = split_comment(raw.strip())
                if not code:
                    if offset == 0 or (not commands or commands[-1].line < start):
                        block_needs |= needs_of(comment)
                    continue
                if first is None:
                    first, needs = start + offset, set(block_needs)
                needs |= needs_of(comment)
                if code.endswith("\\"):
                    pending += code[:-1] + " "
                    continue
                commands.append(Command(page, first, (pending + code).strip(), needs))
                pending, first = "", None
        elif lang in ("", "console", "text"):
            for offset, raw in enumerate(lines):
                if raw.startswith("$ "):
                    code, comment = split_comment(raw[2:])
                    commands.append(Command(page, start + offset, code, needs_of(comment)))
                elif commands and commands[-1].page == page and commands[-1].line >= start:
                    commands[-1].output.append(raw)
    # Commands in the prose (inline code): checked like the others, but their needs are in the text.
    prose = re.sub(r"^\s*```.*?^\s*```", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S | re.M)
    for span in re.finditer(r"`([^`]+)`", prose):
        code = " ".join(span.group(1).split())
        if re.match(r"(python|dvc|pip|accelerate) ", code):
            commands.append(Command(page, prose.count("\n", 0, span.start()) + 1, code, in_block=False))
    return commands


ALL_COMMANDS = [c for p in PAGES for c in page_commands(p)]


def simple_commands(command: str) -> list[list[str]]:
    """The argv of each simple command in a line (split at &&, ||, ;, |, &); [] for lines with `$(`."""
    if "$(" in command:
        return []
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    argvs, argv = [], []
    for token in lexer:
        if token and set(token) <= set("&|;()<>"):
            argvs.append(argv)
            argv = []
        else:
            argv.append(token)
    return [a for a in [*argvs, argv] if a]


def python_modules(command: str) -> list[str]:
    return re.findall(r"(?:python|accelerate launch[^|;&]*?) -m ([A-Za-z_]\w*(?:\.[A-Za-z_]\w*)*)(?![\w.<])", command)


def module_file(name: str) -> Path | None:
    spec = importlib.util.find_spec(name)
    if spec is None:
        return None
    if spec.submodule_search_locations:
        main = importlib.util.find_spec(f"{name}.__main__")
        return Path(main.origin) if main and main.origin else None
    return Path(spec.origin) if spec.origin else None


def parses_arguments(path: Path) -> bool:
    """The module uses argparse, itself or through the module it takes `main` from."""
    source = path.read_text(encoding="utf-8")
    if "argparse" in source:
        return True
    imported = re.search(r"^from ([\w.]+) import main$", source, re.M)
    if imported:
        target = module_file(imported.group(1))
        return bool(target) and "argparse" in target.read_text(encoding="utf-8")
    return False


def dvc_stages() -> set[str]:
    return set(yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"])


def known_predictors() -> set[str]:
    params = yaml.safe_load((REPO_ROOT / "params.yaml").read_text())
    names = set(params["generate"]["predictors"])
    for page in PAGES:
        names |= set(re.findall(r"\+generate\.predictors\.([\w-]+)=", page.read_text(encoding="utf-8")))
    return names


# ------------------------------------------------------------------------------------------- tests
def test_commands_are_found():
    """The extractor sees the documented commands (a floor, so a broken extractor fails)."""
    texts = [c.text for c in ALL_COMMANDS]
    assert any(t.startswith("pip install -r requirements.txt && dvc repro") for t in texts)
    assert any("nep preflight --preset paper" in t for t in texts)
    assert any(t.startswith("dvc exp run") and " -S " in t for t in texts)
    assert len(ALL_COMMANDS) > 50


def test_front_page_is_short_and_links_every_page():
    text = FRONT_PAGE.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_FRONT_PAGE_LINES
    for page in sorted((REPO_ROOT / "docs").glob("*.md")):
        assert f"](docs/{page.name})" in text, f"README.md does not link docs/{page.name}"
    assert "](benchmarks/README.md)" in text and "](CHANGELOG.md)" in text


def test_ci_command_is_on_the_front_page_verbatim():
    ci = (REPO_ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci in FRONT_PAGE.read_text(encoding="utf-8").splitlines()


def test_params_reference_is_up_to_date():
    from nep.commands.reference import render

    committed = (REPO_ROOT / "docs" / "params.md").read_text(encoding="utf-8")
    assert committed == render(), "docs/params.md is stale: python -m nep.commands.reference > docs/params.md"


MODULES = sorted({m for c in ALL_COMMANDS for m in python_modules(c.text)})


@pytest.mark.parametrize("name", MODULES)
def test_python_modules_exist_and_their_help_works(name: str):
    where = [str(c) for c in ALL_COMMANDS if name in python_modules(c.text)][0]
    path = module_file(name)
    assert path is not None, f"{where}: no module {name}"
    if name.split(".")[0] in ("nep", "stages", "benchmarks") and parses_arguments(path):
        result = subprocess.run([sys.executable, "-m", name, "--help"], cwd=REPO_ROOT, capture_output=True,
                                text=True, timeout=120)
        assert result.returncode == 0 and "usage:" in result.stdout, f"{where}: --help failed\n{result.stderr}"


def test_files_and_stages_named_by_commands_exist():
    stages, predictors, problems = dvc_stages(), known_predictors(), []
    for command in ALL_COMMANDS:
        for argv in simple_commands(command.text):
            if argv[0] == "python" and len(argv) > 1 and argv[1].endswith(".py"):
                if not (REPO_ROOT / argv[1]).is_file():
                    problems.append(f"{command}: no file {argv[1]}")
                elif "argparse" in (REPO_ROOT / argv[1]).read_text() and command.in_block:
                    result = subprocess.run([sys.executable, argv[1], "--help"], cwd=REPO_ROOT,
                                            capture_output=True, text=True, timeout=60)
                    if result.returncode != 0:
                        problems.append(f"{command}: --help failed: {result.stderr[-300:]}")
            if argv[:3] == ["pip", "install", "-r"] and not (REPO_ROOT / argv[3]).is_file():
                problems.append(f"{command}: no file {argv[3]}")
            if argv[:2] == ["dvc", "repro"]:
                for target in (a for a in argv[2:] if not a.startswith("-")):
                    stage, _, key = target.partition("@")
                    if stage not in stages:
                        problems.append(f"{command}: no stage {stage!r} in dvc.yaml")
                    elif key and key not in predictors and not PLACEHOLDER.match(key):
                        problems.append(f"{command}: no predictor {key!r} in params.yaml or the docs")
    assert not problems, "\n".join(problems)


def apply_overrides(params: dict, overrides: list[str]) -> dict:
    """DVC's `-S` (Hydra) overrides: `key=value` (key must exist), `+key=value` (adds), `~key` (removes)."""
    from nep.config.params import parse_yaml

    for item in overrides:
        add, remove = item.startswith("+"), item.startswith("~")
        key, _, value = item.lstrip("+~").partition("=")
        *parents, last = key.split(".")
        node = params
        for part in parents:
            node = node.setdefault(part, {}) if add else node[part]
        if remove:
            node.pop(last)
            continue
        if not add and last not in node:
            raise KeyError(f"Could not override '{key}'")
        node[last] = parse_yaml(value) if value else ""
    return params


def exp_runs() -> list[tuple[Command, list[str]]]:
    runs = []
    for command in ALL_COMMANDS:
        if not command.in_block:
            continue
        for argv in simple_commands(command.text):
            if argv[:3] == ["dvc", "exp", "run"]:
                overrides = [argv[i + 1] for i, a in enumerate(argv[:-1]) if a in ("-S", "--set-param")]
                if overrides:
                    runs.append((command, overrides))
    return runs


@pytest.mark.parametrize("command, overrides", exp_runs(), ids=lambda x: str(x)[:60] if isinstance(x, Command) else "")
def test_experiment_overrides_fit_the_schema(command: Command, overrides: list[str]):
    from nep.config.params import load_yaml
    from nep.config.schema import ParamsError, validate

    try:
        params = apply_overrides(load_yaml(REPO_ROOT / "params.yaml"), overrides)
    except KeyError as e:  # DVC refuses such a command before running anything
        pytest.fail(f"{command}: {e.args[0]} (a new key needs a leading +)")
    shown = [line for line in command.output if line.strip()]
    if shown:  # the docs show the error it prints
        with pytest.raises(ParamsError) as error:
            validate(params)
        assert str(error.value).splitlines() == shown, str(command)
    else:
        validate(params)


def test_commands_that_need_a_gpu_the_hub_or_a_key_say_so():
    problems = []
    for command in (c for c in ALL_COMMANDS if c.in_block):
        for need, patterns in NEEDS_PATTERNS.items():
            if any(re.search(p, command.text) for p in patterns) and need not in command.needs:
                problems.append(f"{command}: mark it `# needs: {need}` (has: {sorted(command.needs) or 'none'})")
    assert not problems, "\n".join(problems)


# The module that docs/predictors.md's "How to add a predictor" writes as its example.
EXAMPLES = {"nep/predictors/original.py", "nep.predictors.original"}
REPO_PATH = re.compile(r"(?<![\w./-])((?:nep|stages|tests|benchmarks|presets|docs|\.dvc|\.ci)/[\w./-]*\w)(::\w+)?")


def test_paths_and_names_in_the_docs_exist():
    problems = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        where = page.relative_to(REPO_ROOT)
        for match in REPO_PATH.finditer(text):
            path, test = match.group(1), match.group(2)
            if re.search(r"[*{<]|NAME|\bP\b", text[match.start() : match.end() + 1]) or path.endswith(".local") \
                    or path in EXAMPLES:
                continue  # a pattern or placeholder, or a file each machine makes (.dvc/config.local)
            target = REPO_ROOT / path
            if not target.exists():
                problems.append(f"{where}: {path} does not exist")
            elif test and f"def {test[2:]}(" not in target.read_text(encoding="utf-8"):
                problems.append(f"{where}: {path} has no {test[2:]}")
        for name in sorted(set(re.findall(r"(?<![\w/])nep(?:\.[A-Za-z_]\w*)+", text)) - EXAMPLES):
            parts = name.split(".")
            for cut in range(len(parts), 0, -1):
                try:
                    obj = importlib.import_module(".".join(parts[:cut]))
                    break
                except ModuleNotFoundError:
                    continue
            try:
                for attribute in parts[cut:]:
                    obj = getattr(obj, attribute)
            except AttributeError:
                problems.append(f"{where}: {name} does not exist")
    assert not problems, "\n".join(problems)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_relative_links_and_anchors_resolve():
    problems = []
    for page in PAGES:
        text = page.read_text(encoding="utf-8")
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if re.match(r"\w+://", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (page.parent / file).resolve() if file else page
            if not dest.exists():
                problems.append(f"{page.relative_to(REPO_ROOT)}: link {target}: no such file")
            elif anchor and dest.suffix == ".md":
                anchors = {slug(h) for h in re.findall(r"^#+ (.+)$", dest.read_text(encoding="utf-8"), re.M)}
                if anchor not in anchors:
                    problems.append(f"{page.relative_to(REPO_ROOT)}: link {target}: no such heading")
    assert not problems, "\n".join(problems)


def test_the_readme_real_model_table_matches_its_files():
    """The README's real-model table is the preset run's files: each row's delta chrF, copies and
    answers that ended equal docs/real-model/preset-960-history-blocks/summary.json's (and exact its share)."""
    import json

    summary = json.loads((REPO_ROOT / "docs/real-model/preset-960-history-blocks/summary.json").read_text())
    rows = {"finetuned": "finetuned", "base model, chat prompt, whole next version": "base_chat",
            "propagate": "propagate", "identity": "identity",
            "hybrid: propagate where its rule applies, else finetuned": "hybrid"}
    readme = (REPO_ROOT / "README.md").read_text()
    seen = set()
    for line in readme.splitlines():
        cells = [c.strip().strip("*") for c in line.strip().strip("|").split("|")]
        if len(cells) == 5 and cells[0] in rows:
            s = summary[rows[cells[0]]]
            exact, chrf, copies, ended = (c.strip("*").split(" ")[0] for c in cells[1:])
            assert float(exact) == pytest.approx(s["exact_match"] / s["n"], abs=5e-4), cells[0]
            assert float(chrf.strip("*")) == pytest.approx(s["delta_chrf"], abs=6e-4), cells[0]  # 3 of its 4 decimals
            assert (int(copies), int(ended)) == (s["copies"], s["ended"]), cells[0]
            seen.add(cells[0])
    assert seen == set(rows)
