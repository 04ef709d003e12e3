"""Places nep cannot write (issue 31, item 7): nep's cache (`NEP_CACHE_DIR`) or the project's data/
read-only, full, or a file where a directory is expected: one line naming the place and what
decides it, exit 1, no traceback.

A read-only place is made with a read-only mount in a user and mount namespace (`unshare -rm`),
which holds for root too (root writes through chmod); without one, chmod, as root in a user
namespace whose only user is an ordinary uid (conftest.unprivileged)."""

from __future__ import annotations

import errno
import json
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, make_example, problem_lines, two_chunk_commit, unprivileged

from nep.util.errors import NepError
from nep.util.jsonl import atomic_file, write_jsonl


def can_mount() -> bool:
    if not shutil.which("unshare"):
        return False
    return subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode == 0


MOUNT = can_mount()


def read_only_run(cmd: list[str], cwd: Path, read_only: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """Run `cmd` in `cwd` with `read_only` (an existing directory) unwritable: a read-only bind
    mount in a private namespace, else chmod (as root, in a user namespace where chmod binds)."""
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), **env}
    if MOUNT:
        where = shlex.quote(str(read_only))
        script = (f"mount --bind {where} {where} && mount -o remount,ro,bind {where} && "
                  f"exec {shlex.join(cmd)}")
        return subprocess.run(["unshare", "-rm", "sh", "-c", script], cwd=cwd, env=env, capture_output=True,
                              text=True)
    prefix = unprivileged()  # as root: a user namespace where chmod binds
    mode = read_only.stat().st_mode
    read_only.chmod(0o555)
    try:
        return subprocess.run([*prefix, *cmd], cwd=cwd, env=env, capture_output=True, text=True)
    finally:
        read_only.chmod(mode)


def one_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    lines = problem_lines(done.stderr)
    assert len(lines) == 1, done.stderr
    return lines[0]


# ------------------------------------------------------------------------------ the reproductions
@pytest.fixture
def filter_project(tmp_path: Path) -> Path:
    """A project whose ingest ran (data/ingest from a JSONL source), ready for `stages.filter`."""
    from nep.config.schema import Ingest
    from stages.ingest import run

    project = tmp_path / "project"
    source = tmp_path / "commits.jsonl"
    source.write_text("".join(json.dumps({**two_chunk_commit(i), "license": "mit"}) + "\n" for i in range(4)))
    params = {"ingest": {"source": "jsonl", "languages": ["Python"], "jsonl": {"paths": [str(source)]}},
              "filter": {"workers": 1}}
    project.mkdir()
    (project / "params.yaml").write_text(yaml.safe_dump(params))
    run(Ingest(**params["ingest"]), output_dir=project / "data" / "ingest",
        metrics_path=project / "metrics" / "ingest.json", stamps=tmp_path / "stamps.json")
    return project


def test_filter_with_a_read_only_data_folder_says_so_in_one_line(filter_project):
    done = read_only_run([sys.executable, "-m", "stages.filter"], filter_project, filter_project / "data",
                         {"NEP_CACHE_DIR": str(filter_project / "cache")})
    line = one_line(done)
    assert line.startswith("filter: data/filter: cannot write (") and "data/, models/ and metrics/" in line, line
    # writable again, the same command works
    done = subprocess.run([sys.executable, "-m", "stages.filter"], cwd=filter_project, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "NEP_CACHE_DIR": str(filter_project / "c")})
    assert done.returncode == 0, done.stderr
    assert (filter_project / "data" / "filter" / "commits.jsonl").exists()


@pytest.fixture
def generate_project(tmp_path: Path) -> Path:
    project = tmp_path / "project"
    write_jsonl(project / "data" / "split" / "test.jsonl", [make_example("a = 1\n", "a = 1\nb = 2\n", "a = 1\nb = 2\n")])
    entry = {"kind": "identity", "needs": "data/split/test.jsonl"}
    (project / "params.yaml").write_text(yaml.safe_dump({"generate": {"predictors": {"same": entry}}}))
    return project


def generate_cmd() -> list[str]:
    return [sys.executable, "-m", "stages.generate", "--predictor", "same"]


def test_generate_with_nep_cache_dir_read_only_names_the_variable(generate_project, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    line = one_line(read_only_run(generate_cmd(), generate_project, cache, {"NEP_CACHE_DIR": str(cache)}))
    assert line.startswith(f"generate: {cache}/") and "cannot write (" in line, line
    assert f"NEP_CACHE_DIR={cache}" in line and "point NEP_CACHE_DIR at a writable directory" in line
    assert not (generate_project / "data" / "generate").exists()


def test_generate_with_nep_cache_dir_on_a_file_names_the_variable(generate_project, tmp_path):
    """Runs anywhere, root included: a file where the cache directory should be."""
    cache = tmp_path / "not-a-dir"
    cache.write_text("")
    done = subprocess.run(generate_cmd(), cwd=generate_project, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "NEP_CACHE_DIR": str(cache)})
    line = one_line(done)
    assert "a file stands where a directory is expected" in line and f"NEP_CACHE_DIR={cache}" in line, line


def test_a_data_folder_that_is_a_file_is_named(generate_project, tmp_path):
    (generate_project / "data" / "generate").write_text("")  # where generate writes its records
    done = subprocess.run(generate_cmd(), cwd=generate_project, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "NEP_CACHE_DIR": str(tmp_path / "c")})
    line = one_line(done)
    assert line.startswith("generate: data/generate") and "data/, models/ and metrics/" in line, line


# ------------------------------------------------------------------------------ the pieces
def test_unwritable_names_what_decides_the_place(tmp_path, monkeypatch):
    from nep.util.paths import unwritable

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    read_only = OSError(errno.EROFS, "Read-only file system", str(tmp_path / "cache" / "llm"))
    error = unwritable(read_only)
    assert isinstance(error, NepError) and isinstance(error, OSError) and error.errno == errno.EROFS
    assert str(error).startswith(f"{tmp_path}/cache/llm: cannot write (Read-only file system) (NEP_CACHE_DIR=")
    monkeypatch.delenv("NEP_CACHE_DIR")
    assert "set NEP_CACHE_DIR to a writable directory" in str(unwritable(OSError(errno.EACCES, "Permission denied",
                                                                               ".cache/nep/generate")))
    full = unwritable(OSError(errno.ENOSPC, "No space left on device", "data/label/commits.jsonl"))
    assert "free some space" in str(full)
    assert unwritable(OSError(errno.EROFS, "Read-only file system", "/elsewhere/x")).hint is None
    taken = unwritable(OSError(errno.EEXIST, "File exists", "data/generate"))  # mkdir(exist_ok) on a file
    assert "(a file stands where a directory is expected)" in str(taken)
    assert unwritable(OSError(errno.ENOENT, "No such file or directory", "data/x")) is None  # not about writing
    assert unwritable(OSError(errno.EROFS, "Read-only file system")) is None  # no place to name


def test_atomic_file_refuses_in_one_line_and_a_caller_may_still_catch_oserror(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("data").write_text("")
    refused = r"^data/x: cannot write \(Not a directory.*make them writable\)$"
    with pytest.raises(NepError, match=refused), atomic_file("data/x/out.json") as f:
        f.write("{}")
    # a cache a command can do without (params.checked.json) catches OSError
    with pytest.raises(OSError), atomic_file("data/x/out.json") as f:
        f.write("{}")


# ---------------------------------------------------------------- where a project is, and its file names
def test_project_root_is_the_nearest_folder_with_dvc_yaml_and_params_yaml(tmp_path, monkeypatch):
    from nep.util.paths import enter_project_root, project_root

    outer, inner = tmp_path / "outer", tmp_path / "outer/docs/deep"
    inner.mkdir(parents=True)
    (outer / "dvc.yaml").write_text("stages: {}\n")
    assert project_root(inner) is None  # dvc.yaml alone is not a nep project
    (outer / "params.yaml").write_text("{}\n")
    (tmp_path / "outer/docs/dvc.yaml").write_text("stages: {}\n")  # not both files: skipped
    assert project_root(inner) == outer.resolve()
    monkeypatch.chdir(inner)
    assert enter_project_root() == outer.resolve()
    assert Path.cwd() == outer.resolve()


def test_outside_a_project_enter_project_root_says_where_to_run(tmp_path, monkeypatch):
    from nep.util.errors import NepError
    from nep.util.paths import enter_project_root

    monkeypatch.chdir(tmp_path)
    with pytest.raises(NepError, match="is not inside a nep project"):
        enter_project_root()


def test_the_pipeline_file_names(monkeypatch):
    from nep.util import paths

    assert paths.metrics("filter") == Path("metrics/filter.json")
    assert paths.metrics("generate", "mine") == Path("metrics/generate/mine.json")
    assert paths.timing("judge", "mine") == Path("metrics/timing/judge/mine.json")
    assert paths.generations("mine") == Path("data/generate/mine.jsonl")
    assert paths.judgments("mine") == Path("data/judge/mine.jsonl")
    monkeypatch.delenv("NEP_CACHE_DIR", raising=False)
    assert paths.cache_root() == Path(".cache/nep")
    monkeypatch.setenv("NEP_CACHE_DIR", "/somewhere")
    assert paths.cache_root() == Path("/somewhere")


def test_label_with_a_read_only_llm_cache_names_the_variable(tmp_path, monkeypatch):
    """The LLM response cache (SQLite) already there, its folder read-only: one line, not sqlite's
    OperationalError traceback."""
    import sqlite3

    from nep.llm.cache import cache_path

    project = tmp_path / "project"
    write_jsonl(project / "data" / "filter" / "commits.jsonl", [two_chunk_commit(i) for i in range(2)])
    label = {"backend": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "m", "api_key_env": "",
             "max_attempts": 1, "max_failure_rate": 1.0}
    (project / "params.yaml").write_text(yaml.safe_dump({"label": label}))
    cache = tmp_path / "cache"
    env = {"NEP_CACHE_DIR": str(cache)}
    monkeypatch.setenv("NEP_CACHE_DIR", str(cache))
    db_path = cache_path()
    db_path.parent.mkdir(parents=True)
    sqlite3.connect(db_path).close()
    line = one_line(read_only_run([sys.executable, "-m", "stages.label"], project, db_path.parent, env))
    assert line.startswith(f"label: {db_path.parent}") and "cannot write (" in line, line
    assert f"NEP_CACHE_DIR={cache}" in line
