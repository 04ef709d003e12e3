"""Nothing wrong is final: the `openai` predictor's failure policy (a failed generation is never
saved, over `max_failure_rate` the stage fails and writes nothing, a rerun regenerates the same
bytes as an uninterrupted run), and an API key that never reaches a file."""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, copy_project, git, make_example, problem_lines
from fake_openai import FakeOpenAI

from nep.config.schema import Label
from nep.predictors.base import Settings
from nep.predictors.kinds import build_predictor
from nep.predictors.runner import TooManyFailedGenerations, checkpoint_dir, generate
from nep.util.errors import NepError
from nep.util.jsonl import read_jsonl, write_jsonl

ANSWER = "<next_version>\nx = 1\n</next_version>"
KEY = f"sk-nep-policy-{secrets.token_hex(12)}"  # made at run time: in no source file


def api_examples(n: int = 10) -> list[dict]:
    return [make_example(f"a_{i} = {i}\n", f"a_{i} = {i}\nb_{i} = {i}\n", f"a_{i} = {i}\nb_{i} = {i}\nc = 0\n",
                         path=f"m{i}.py") for i in range(n)]


@pytest.fixture
def test_set(tmp_path: Path) -> Path:
    path = tmp_path / "data" / "split" / "test.jsonl"
    write_jsonl(path, api_examples())
    return path


@pytest.fixture
def server(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    with FakeOpenAI(default_answer=ANSWER) as fake:
        yield fake


def entry(server: FakeOpenAI, **extra) -> dict:
    return {"kind": "openai", "model": "m", "base_url": server.url, "api_key_env": "", "concurrency": 1,
            "max_attempts": 1, "needs": "data/split/test.jsonl", **extra}


def run(root: Path, test_set: Path, config: dict) -> dict:
    return generate("api", config, Settings.of(max_new_tokens=16, batch_size=8, threads=1), test_path=test_set, out_path=root / "out.jsonl",
                    metrics_path=root / "metrics.json", timing_path=root / "timing.json", progress=False)


def saved_answers() -> int:
    [path] = checkpoint_dir().glob("api.*.jsonl")
    return len(path.read_text().splitlines()) - 1  # after the header


def test_an_outage_fails_the_run_writes_nothing_and_keeps_only_successes(tmp_path, test_set, server, monkeypatch):
    server.fail_next("500", 3)  # 3 of 10 requests answered 500 (max_attempts 1: no retry)
    with pytest.raises(TooManyFailedGenerations) as error:
        run(tmp_path / "a", test_set, entry(server))
    line = str(error.value)
    assert line.startswith("generate.predictors.api.max_failure_rate: 3 of 10 generations failed "
                           "(backend_error.server_error: 3)") and "\n" not in line
    assert isinstance(error.value, NepError)
    assert not (tmp_path / "a").exists()  # no record, no metric
    assert saved_answers() == 7  # the failures are not kept: the rerun asks them again

    server.reset_counts()
    metrics = run(tmp_path / "a", test_set, entry(server))
    assert server.requests == 3 and metrics["failed"] == 0 and metrics["extracted"] == 10
    timing = json.loads((tmp_path / "a" / "timing.json").read_text())
    assert (timing["examples_resumed"], timing["examples_generated"], timing["examples_failed"]) == (7, 3, 0)

    # an uninterrupted run (its own cache) writes the same bytes, records and metrics
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "other-cache"))
    run(tmp_path / "b", test_set, entry(server))
    for name in ("out.jsonl", "metrics.json"):
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_every_request_failing_fails_whatever_the_reason(tmp_path, test_set, server):
    server.fail_next("503", 10)
    with pytest.raises(TooManyFailedGenerations, match=r"10 of 10 generations failed \(backend_error.server_error"):
        run(tmp_path, test_set, entry(server))
    with pytest.raises(TooManyFailedGenerations, match=r"bad_response: 10"):
        server.fail_next("html", 10)
        run(tmp_path, test_set, entry(server))
    assert not list(tmp_path.glob("*.json*"))


def test_tolerated_failures_are_written_once_counted_and_asked_again_next_time(tmp_path, test_set, server):
    server.fail_next("500", 2)
    metrics = run(tmp_path, test_set, entry(server, max_failure_rate=0.2))
    records = list(read_jsonl(tmp_path / "out.jsonl"))
    failed = [r for r in records if r["extraction"] == "backend_error.server_error"]
    assert len(failed) == 2 and all(r["output"] == r["raw_output"] == "" for r in failed)
    assert metrics["failed"] == 2 == metrics["extraction.backend_error.server_error"] == metrics["unextracted"]
    assert not any(k.startswith("llm.") for k in metrics)  # one count of failures, from the records
    timing = json.loads((tmp_path / "timing.json").read_text())
    assert timing["examples_failed"] == 2 and "llm.failed" not in timing
    server.reset_counts()
    again = run(tmp_path, test_set, entry(server, max_failure_rate=0.2))
    assert server.requests == 2 and again["failed"] == 0  # failures never reach the response cache


def test_max_failure_rate_is_an_option_of_every_kind_checked_up_front():
    from nep.commands.config import check  # `nep config`, preflight; the generate stage checks its entry
    from nep.config.schema import ParamsError

    for kind in ({"kind": "identity"}, {"kind": "openai", "model": "m"}, {"kind": "file", "path": "f"}):
        assert build_predictor("p", {**kind, "max_failure_rate": 0.25}).max_failure_rate == 0.25
        assert build_predictor("p", kind).max_failure_rate == 0.0  # strict by default
    for bad, message in ((1.5, "out of range"), ("0.1", "expected float"), (float("inf"), "not a finite number")):
        params = {"generate": {"predictors": {"p": {"kind": "identity", "needs": "x", "max_failure_rate": bad}}}}
        with pytest.raises(ParamsError, match=rf"generate\.predictors\.p\.max_failure_rate: .*{message}"):
            check(params)


# ------------------------------------------------------------------------ through the stage and dvc
def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def project_with(tmp_path: Path, test_set: Path, predictor: dict) -> Path:
    project = copy_project(tmp_path / "project")
    (project / "data" / "split").mkdir(parents=True)
    shutil.copy(test_set, project / "data" / "split" / "test.jsonl")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["generate"]["predictors"] = {"api": predictor}
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    return project


def stage(project: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stages.generate", "--predictor", "api"], cwd=project,
                          env={**os.environ, "PYTHONPATH": str(project), **env}, capture_output=True, text=True)


def test_a_key_with_a_trailing_cr_is_refused_in_one_line_and_written_nowhere(tmp_path, test_set, server):
    project = project_with(tmp_path, test_set, {**entry(server), "api_key_env": "NEP_POLICY_KEY"})
    cache = tmp_path / "cache"
    done = stage(project, {"NEP_POLICY_KEY": KEY + "\r", "NEP_CACHE_DIR": str(cache)})
    assert done.returncode == 1 and server.requests == 0
    lines = problem_lines(done.stderr)
    assert len(lines) == 1 and "generate.predictors.api.api_key_env" in lines[0], done.stderr
    assert "NEP_POLICY_KEY holds U+000D (carriage return)" in lines[0]
    assert not (project / "data" / "generate").exists()
    # blanks around the key are stripped: the run works; a server echoing the key in its answers
    # puts it in no record, metric, checkpoint or cache
    server.fail_next("echo", 10)
    done = stage(project, {"NEP_POLICY_KEY": f"  {KEY}\t", "NEP_CACHE_DIR": str(cache)})
    assert done.returncode == 0, done.stderr
    assert server.authorization == {f"Bearer {KEY}"}
    records = list(read_jsonl(project / "data" / "generate" / "api.jsonl"))
    assert all("Bearer ***" in r["raw_output"] for r in records)
    forms = [KEY, KEY[5:], json.dumps(KEY)[1:-1]]
    for root in (project, cache):
        for path in root.rglob("*"):
            if path.is_file():
                data = path.read_bytes()
                assert not any(form.encode() in data for form in forms), path
    assert KEY not in done.stderr + done.stdout


@pytest.mark.slow
def test_dvc_repro_fails_while_the_endpoint_is_down_and_regenerates_once_it_is_back(tmp_path, test_set, server):
    """Down: `dvc repro` fails and locks nothing. Back: it regenerates; the rows equal an
    uninterrupted run's. Half-down (30% answered 500): the same."""
    port = free_port()
    config = {**entry(server), "base_url": f"http://127.0.0.1:{port}/v1"}
    project = project_with(tmp_path, test_set, config)
    git(project, "init", "-q")
    env = {**os.environ, "PYTHONPATH": str(project), "NEP_CACHE_DIR": str(tmp_path / "project-cache")}

    def repro() -> subprocess.CompletedProcess:
        return subprocess.run(["dvc", "repro", "-s", "generate@api"], cwd=project, env=env, capture_output=True,
                              text=True)

    down = repro()
    assert down.returncode != 0 and "cannot connect" in down.stdout + down.stderr
    assert not (project / "dvc.lock").exists() and not (project / "data" / "generate" / "api.jsonl").exists()
    with FakeOpenAI(default_answer=ANSWER, port=port) as flaky:
        flaky.fail_next("500", 3)
        half = repro()
        assert half.returncode != 0 and "3 of 10 generations failed" in half.stdout + half.stderr
        assert not (project / "dvc.lock").exists()
        back = repro()
        assert back.returncode == 0, back.stderr
        assert flaky.requests == 10 + 3  # the 7 answers of the failed run were kept, the 3 failures asked again
    uninterrupted = tmp_path / "uninterrupted"
    run(uninterrupted, test_set, entry(server))
    assert (project / "data" / "generate" / "api.jsonl").read_bytes() == (uninterrupted / "out.jsonl").read_bytes()
    assert (project / "metrics" / "generate" / "api.json").read_bytes() == (uninterrupted / "metrics.json").read_bytes()
    assert "generate@api" in (project / "dvc.lock").read_text()
    assert REPO_ROOT.exists()


def test_label_with_a_cr_key_stops_in_one_line_and_an_echoing_server_leaves_no_key(tmp_path, server, monkeypatch):
    from conftest import two_chunk_commit

    from stages import label as label_stage

    write_jsonl(tmp_path / "data/filter/commits.jsonl",
                [two_chunk_commit(i, "[[fault:*401]]" if i % 2 else "[[fault:echo]]") for i in range(4)])
    config = {"backend": "openai", "base_url": server.url, "model": "m", "api_key_env": "NEP_POLICY_KEY",
              "max_attempts": 2, "max_failure_rate": 1.0}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"label": config}))
    done = subprocess.run([sys.executable, "-m", "stages.label"], cwd=tmp_path, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "NEP_POLICY_KEY": KEY + "\r"})
    assert done.returncode == 1 and server.requests == 0 and "Traceback" not in done.stderr
    lines = problem_lines(done.stderr)
    assert len(lines) == 1 and "api_key_env" in lines[0], done.stderr
    assert "NEP_POLICY_KEY holds U+000D (carriage return)" in done.stderr and KEY not in done.stderr

    monkeypatch.setenv("NEP_POLICY_KEY", KEY)
    monkeypatch.chdir(tmp_path)
    label_stage.run(Label(**config))
    reasons = [r["label_reason"] for r in read_jsonl(tmp_path / "data/label/commits.jsonl")]
    assert all("Bearer ***" in r for r in reasons), reasons  # answers and 401 details echo it, scrubbed
    for path in tmp_path.rglob("*"):  # outputs, metrics, the response cache (NEP_CACHE_DIR is under tmp_path)
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
