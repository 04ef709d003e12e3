"""Shared pytest fixtures. Everything runs offline on a CPU."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]


def has_cuda() -> bool:
    try:
        import torch

        return torch.cuda.is_available()
    except Exception:
        return False


def pytest_sessionfinish(session, exitstatus):
    """A run that selects no test (e.g. `pytest -m slow` where none is slow) passes: exit 0, not 5."""
    if exitstatus == pytest.ExitCode.NO_TESTS_COLLECTED:
        session.exitstatus = pytest.ExitCode.OK


def pytest_collection_modifyitems(config, items):
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items or has_cuda():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in gpu_items:
        item.add_marker(skip)


def git(cwd: Path, *args: str, env: dict[str, str] | None = None) -> str:
    """Run git in `cwd` with a fixed identity; return stdout."""
    full_env = {
        **os.environ,
        "GIT_AUTHOR_NAME": "Test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "Test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
        **(env or {}),
    }
    return subprocess.run(
        ["git", *args], cwd=cwd, env=full_env, check=True, capture_output=True, text=True
    ).stdout


@pytest.fixture
def git_repo(tmp_path: Path):
    """An empty git repository; returns (path, commit) where commit(files, message, date) writes
    files (path → text, None deletes) and commits them, returning the sha."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    counter = {"n": 0}

    def commit(files: dict[str, str | bytes | None], message: str = "change", date: str | None = None) -> str:
        for rel, content in files.items():
            p = repo / rel
            if content is None:
                p.unlink()
                continue
            p.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, bytes):
                p.write_bytes(content)
            else:
                p.write_text(content)
        git(repo, "add", "-A")
        counter["n"] += 1
        when = date or f"2024-01-01T00:{counter['n']:02d}:00+00:00"
        git(repo, "commit", "-q", "-m", message, env={"GIT_AUTHOR_DATE": when, "GIT_COMMITTER_DATE": when})
        return git(repo, "rev-parse", "HEAD").strip()

    return repo, commit


def copy_project(dest: Path) -> Path:
    """Copy the project's tracked-or-new files (no data, models or caches) into `dest`."""
    anywhere = shutil.ignore_patterns(".git", ".cache", "__pycache__", ".pytest_cache", ".ruff_cache", "cache", "tmp")
    top = {"data", "models", "dvc.lock", "benchmarks"}  # pipeline outputs at the root (nep/data/ is code)

    def ignore(directory: str, names: list[str]) -> set[str]:
        return anywhere(directory, names) | (top & set(names) if Path(directory) == REPO_ROOT else set())

    shutil.copytree(REPO_ROOT, dest, ignore=ignore)
    return dest


@pytest.fixture
def fake_openai(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A FakeOpenAI chat-completions server on 127.0.0.1 (see tests/fake_openai.py), with the LLM
    response cache redirected to tmp_path."""
    from fake_openai import FakeOpenAI

    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "nep-cache"))
    with FakeOpenAI() as server:
        yield server


def run_dvc(project: Path, *args: str, env: dict[str, str] | None = None, with_stderr: bool = False) -> str:
    """Run `dvc ARGS` in `project` (the one way tests call dvc); fail the test with dvc's output if
    it fails; return stdout (followed by stderr when `with_stderr`)."""
    result = subprocess.run(
        ["dvc", *args], cwd=project, capture_output=True, text=True, env={**os.environ, **(env or {})}
    )
    assert result.returncode == 0, f"dvc {' '.join(args)}\n{result.stdout}\n{result.stderr}"
    return result.stdout + result.stderr if with_stderr else result.stdout


def project_on_history(root: Path, *, repos: int = 2, commits_per_repo: int = 20, **params_overrides) -> Path:
    """A copy of the project under `root`/project, committed to a fresh git repository, whose
    ingest mines a synthetic history (tests/history.py) built under `root`/history.
    `params_overrides` maps "section.key" to a value written into the copy's params.yaml."""
    import yaml
    from history import make_history

    paths = make_history(root / "history", repos=repos, commits_per_repo=commits_per_repo)
    project = copy_project(root / "project")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["ingest"]["git"]["repos"] = [str(p) for p in paths]
    params["ingest"]["git"]["rev"] = "HEAD"  # the default's pinned revision is one of this repository's
    for dotted, value in params_overrides.items():
        *parents, key = dotted.split(".")
        node = params
        for name in parents:
            node = node[name]
        node[key] = value
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    git(project, "init", "-q", "-b", "main")
    git(project, "add", "-A")
    git(project, "commit", "-q", "-m", "baseline params")
    return project


# ---------------------------------------------------------------- shared factories
def commit_record(old: str, new: str, *, sha: str = "c", path: str = "f.py", lang: str = "Python", **extra) -> dict:
    """A commit record in ingest's schema (nep/core/records.py: COMMIT_FIELDS) changing `path` from
    `old` to `new`; `extra` adds or overrides fields."""
    return {"commit": sha, "old_file": path, "new_file": path, "old_contents": old, "new_contents": new,
            "subject": "s", "message": "m", "lang": lang, "repos": "r", **extra}


def two_chunk_commit(i: int, marker: str = "", *, path: str = "a.py") -> dict:
    """A commit record that passes the default filter: it adds `size_i = i` among ten lines and,
    five lines later, a use of it (two added one-line chunks); `marker` ends the second one."""
    old = "".join(f"item_{k} = load({k})\n" for k in range(10))
    lines = old.splitlines(keepends=True)
    new = "".join(lines[:3] + [f"size_{i} = {i}\n"] + lines[3:8] + [f"use(size_{i})  # {marker}\n"] + lines[8:])
    return commit_record(old, new, sha=f"{i:040x}", path=path)


def make_example(original: str, current: str, nxt: str, path: str = "a.py", language: str = "Python") -> dict:
    """A processed example (process stage's schema): the three versions and the training text."""
    from nep.core.prompts import build_training_text, example_id

    t = build_training_text(original, current, nxt, path=path)
    return {
        "id": example_id("repo", "sha", path, original),
        "path": path,
        "language": language,
        "original": original,
        "current": current,
        "next": nxt,
        "prompt": t.prompt,
        "completion": t.completion,
        "text": t.text,
    }


# (original, current, next) triples: small edits whose training texts train the shared tiny model
TINY_EDITS = [
    ("total = 0\nfor x in xs:\n    total += x\n", "total = 0\ncount = 0\nfor x in xs:\n    total += x\n",
     "total = 0\ncount = 0\nfor x in xs:\n    total += x\n    count += 1\n"),
    ("def area(width, height):\n    return width * height\n",
     "def area(width, height, depth):\n    return width * height\n",
     "def area(width, height, depth):\n    return width * height * depth\n"),
    ("class Stack:\n    def __init__(self):\n        self.items = []\n",
     "class Stack:\n    def __init__(self):\n        self.items = []\n        self.size = 0\n",
     "class Stack:\n    def __init__(self):\n        self.items = []\n        self.size = 0\n\n"
     "    def push(self, x):\n        self.items.append(x)\n"),
]


def tiny_model(directory: Path, texts: list[str] | None = None, vocab_size: int = 400) -> Path:
    """The tiny-random smoke model (nep/train/tiny.py) with a tokenizer trained on `texts` (default: the
    training texts of TINY_EDITS), in `directory`."""
    from nep.train.tiny import build_tiny_model

    texts = texts or [make_example(*edit)["text"] for edit in TINY_EDITS]
    return build_tiny_model(texts, directory, vocab_size=vocab_size)


@pytest.fixture(scope="session")
def tiny_dir(tmp_path_factory) -> Path:
    """One tiny model for the whole session (a test module needing its own texts calls tiny_model)."""
    return tiny_model(tmp_path_factory.mktemp("tiny"))


@functools.cache
def _can_unshare_user() -> bool:
    if not shutil.which("unshare"):
        return False
    probe = ["unshare", "-U", "--map-user=1000", "--map-group=1000", "true"]
    return subprocess.run(probe, capture_output=True).returncode == 0


def unprivileged() -> list[str]:
    """A command prefix under which file permissions hold: [] when the tests do not run as root; as
    root, a user namespace whose only user is an ordinary uid (`unshare -U --map-user=1000`: the
    tests' files are its own, chmod binds it); pytest.skip where neither is possible."""
    if os.geteuid() != 0:
        return []
    if not _can_unshare_user():
        pytest.skip("running as root, and no user namespace (unshare -U) to drop root's power over chmod")
    return ["unshare", "-U", "--map-user=1000", "--map-group=1000"]


def problem_lines(stderr: str) -> list[str]:
    """A stage's stderr without its banner (`== stage: ...`) and progress bars: what it says went wrong."""
    return [line for line in stderr.splitlines()
            if line.strip() and not line.startswith("== ") and "examples [" not in line and "%|" not in line]
