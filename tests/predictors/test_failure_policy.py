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

    def repro() -> subprocess.CompletedProcess:  # the stage and the one before it (retry: its list of failures)
        return subprocess.run(["dvc", "repro", "-s", "retry", "generate@api"], cwd=project, env=env,
                              capture_output=True, text=True)

    def locked() -> bool:
        lock = project / "dvc.lock"
        return lock.exists() and "generate@api" in yaml.safe_load(lock.read_text())["stages"]

    down = repro()
    assert down.returncode != 0 and "cannot connect" in down.stdout + down.stderr
    assert not locked() and not (project / "data" / "generate" / "api.jsonl").exists()
    with FakeOpenAI(default_answer=ANSWER, port=port) as flaky:
        flaky.fail_next("500", 3)
        half = repro()
        assert half.returncode != 0 and "3 of 10 generations failed" in half.stdout + half.stderr
        assert not locked()
        back = repro()
        assert back.returncode == 0, back.stderr
        assert flaky.requests == 10 + 3  # the 7 answers of the failed run were kept, the 3 failures asked again
    uninterrupted = tmp_path / "uninterrupted"
    run(uninterrupted, test_set, entry(server))
    assert (project / "data" / "generate" / "api.jsonl").read_bytes() == (uninterrupted / "out.jsonl").read_bytes()
    assert (project / "metrics" / "generate" / "api.json").read_bytes() == (uninterrupted / "metrics.json").read_bytes()
    assert locked()
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


# ------------------------------------- tolerated failures are asked again by `dvc repro` (issue 31, item 9)
def test_tolerated_failures_keep_the_checkpoint_and_are_listed_for_the_retry(tmp_path, test_set, server):
    from nep.predictors.retry import mark, read_state

    retry = tmp_path / "retry" / "api.json"
    server.fail_next("500", 2)
    config = entry(server, max_failure_rate=0.2)
    generate("api", config, Settings.of(max_new_tokens=16, batch_size=8, threads=1), test_path=test_set, out_path=tmp_path / "out.jsonl",
             metrics_path=tmp_path / "metrics.json", timing_path=tmp_path / "timing.json", retry_path=retry,
             progress=False)
    ids = [r["id"] for r in read_jsonl(tmp_path / "out.jsonl") if r["extraction"].startswith("backend_error")]
    assert read_state(retry) == {"failed": ids} and len(ids) == 2
    assert saved_answers() == 8  # the checkpoint stays: a retry asks only the failures
    # the retry stage marks the list (dvc.lock holds it unmarked: generate@api is out of date) ...
    assert mark(retry.parent, ["api", "other"]) == {"api": 2}
    assert read_state(retry) == {"failed": ids, "retry": True}
    assert read_state(retry.parent / "other.json") == {"failed": []}  # a new predictor: nothing to ask
    before = retry.read_bytes()
    assert mark(retry.parent, ["api"]) == {"api": 2} and retry.read_bytes() == before  # marked once
    assert not (retry.parent / "other.json").exists()  # no longer a predictor
    # ... and the retry asks only them, then lists none: the file of a run without failures
    server.reset_counts()
    generate("api", config, Settings.of(max_new_tokens=16, batch_size=8, threads=1), test_path=test_set, out_path=tmp_path / "out.jsonl",
             metrics_path=tmp_path / "metrics.json", timing_path=tmp_path / "timing.json", retry_path=retry,
             progress=False)
    assert server.requests == 2 and retry.read_text() == '{"failed": []}\n'
    assert not list(checkpoint_dir().glob("api.*.jsonl"))
    assert mark(retry.parent, ["api"]) == {} and retry.read_text() == '{"failed": []}\n'  # nothing to do


def test_the_checkpoint_key_holds_the_code_and_for_batched_models_the_batch(tmp_path, monkeypatch):
    """A run resumed after a code change (or, for transformers' padded batches, another batch_size
    or thread count) starts afresh instead of reusing the old code's answers."""
    from nep.predictors import runner

    base = dict(entry={"kind": "hf", "model": "m"}, max_new_tokens=16, test_bytes=b"t")
    key = runner.checkpoint_key(**base, code="a", batch=(8, 1))
    assert key != runner.checkpoint_key(**base, code="b", batch=(8, 1))
    assert key != runner.checkpoint_key(**base, code="a", batch=(4, 1))
    assert key != runner.checkpoint_key(**base, code="a", batch=(8, 2))
    assert key == runner.checkpoint_key(**base, code="a", batch=(8, 1))
    # code_hash reads the code: one changed byte changes it
    root = tmp_path / "project"
    for entry_path in runner.CODE:
        target = root / entry_path / "x.py" if not entry_path.endswith(".py") else root / entry_path
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("a = 1\n")
    first = runner.code_hash(root)
    (root / "nep" / "predictors" / "x.py").write_text("a = 2\n")
    assert runner.code_hash(root) != first
    # which kinds are batch-dependent: transformers' (hf, finetuned), not an endpoint or a file
    assert build_predictor("p", {"kind": "hf", "model": "m"}).batch_dependent
    for kind in ({"kind": "openai", "model": "m"}, {"kind": "file", "path": "f"}, {"kind": "identity"}):
        assert not getattr(build_predictor("p", kind), "batch_dependent", False)


def test_a_resumed_run_after_a_code_change_asks_again(tmp_path, test_set, server, monkeypatch):
    from nep.predictors import runner

    config = entry(server, cache=False)  # no response cache: every answer the run uses is asked or resumed
    server.fail_next("500", 3)
    with pytest.raises(TooManyFailedGenerations):
        run(tmp_path, test_set, config)
    assert saved_answers() == 7
    monkeypatch.setattr(runner, "code_hash", lambda root=None: "new code")
    server.reset_counts()
    run(tmp_path, test_set, config)
    assert server.requests == 10  # the old code's 7 answers are not reused


def test_runner_code_is_what_dvc_yaml_declares_for_generate():
    from nep.predictors.runner import CODE

    stages = yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"]
    deps = [d for d in stages["generate"]["do"]["deps"] if not d.startswith(("data/", "${"))]
    assert sorted(deps) == sorted(CODE)


def retry_project(tmp_path: Path, test_set: Path, predictor: dict) -> Path:
    """A project whose dvc.yaml holds only the retry and generate stages (dvc.yaml's own), with
    its test set in place: a plain `dvc repro` runs just those."""
    project = project_with(tmp_path, test_set, predictor)
    pipeline = yaml.safe_load((project / "dvc.yaml").read_text())
    pipeline = {"stages": {k: v for k, v in pipeline["stages"].items() if k in ("retry", "generate")}}
    (project / "dvc.yaml").write_text(yaml.safe_dump(pipeline, sort_keys=False))
    git(project, "init", "-q")
    return project


@pytest.mark.slow
def test_dvc_repro_asks_tolerated_failures_again_once_the_endpoint_is_back(tmp_path, test_set, server):
    """The reproduction: max_failure_rate 0.2, 2 of 10 answers fail: `dvc repro` succeeds and writes
    them as failures; the endpoint back, a plain `dvc repro` (no -f) asks only those 2 and writes
    what an uninterrupted run writes; the next `dvc repro` runs no generation."""
    port = free_port()
    config = {**entry(server), "base_url": f"http://127.0.0.1:{port}/v1", "max_failure_rate": 0.2}
    project = retry_project(tmp_path, test_set, config)
    env = {**os.environ, "PYTHONPATH": str(project), "NEP_CACHE_DIR": str(tmp_path / "project-cache")}

    def repro() -> str:
        done = subprocess.run(["dvc", "repro"], cwd=project, env=env, capture_output=True, text=True)
        assert done.returncode == 0, done.stdout + done.stderr
        return done.stdout + done.stderr

    records = project / "data" / "generate" / "api.jsonl"
    with FakeOpenAI(default_answer=ANSWER, port=port) as flaky:
        flaky.fail_next("500", 2)
        repro()
        assert flaky.requests == 10
        assert sum(r["extraction"] == "backend_error.server_error" for r in read_jsonl(records)) == 2
        flaky.reset_counts()
        out = repro()  # the endpoint is back
        assert "Running stage 'generate@api'" in out and flaky.requests == 2, out
        assert "retry: generate@api asks its 2 tolerated failure(s) again" in out
        flaky.reset_counts()
        out = repro()
        assert "Stage 'generate@api' didn't change, skipping" in out and flaky.requests == 0, out
        healed = yaml.safe_load((project / "dvc.lock").read_text())["stages"]["generate@api"]

    # an uninterrupted run of another copy: the same records, metrics and dvc.lock entry
    other = retry_project(tmp_path / "uninterrupted", test_set, {**config, "base_url": server.url})
    done = subprocess.run(["dvc", "repro"], cwd=other, capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(other), "NEP_CACHE_DIR": str(tmp_path / "other-cache")})
    assert done.returncode == 0, done.stderr
    for rel in ("data/generate/api.jsonl", "metrics/generate/api.json", "data/retry/api.json"):
        assert (project / rel).read_bytes() == (other / rel).read_bytes(), rel
    uninterrupted = yaml.safe_load((other / "dvc.lock").read_text())["stages"]["generate@api"]
    assert (healed["deps"], healed["outs"]) == (uninterrupted["deps"], uninterrupted["outs"])  # params: the port


def test_generation_metrics_count_answers_that_end_and_copies():
    """`ended` counts answers the model finished (not cut at a limit, not stopped in a loop);
    `copies` the next versions equal to the current version (final newlines aside)."""
    from conftest import make_example

    from nep.predictors.runner import make_record, summarize
    from nep.predictors.stop import EOS, GROWTH, LENGTH, REPEATED

    ex = make_example("a = 1\nb = 2\n", "a = 1\nb = 3\n", "a = 1\nb = 3\nc = 4\n")
    current = ex["current"]

    def answer(raw, stop):
        return {"raw_output": raw, "style": "completion", "skipped": "", "output_tokens": 3, "tags": {"stop": stop}}

    answers = [answer(current + "\n", EOS), answer(current.rstrip("\n"), EOS), answer(ex["next"], EOS),
               answer("a = 1\n", LENGTH), answer("a = 1\n", GROWTH), answer("b\nb\nb\n", REPEATED)]
    records = [make_record(ex, a) for a in answers]
    m = summarize(records, answers)
    assert (m["ended"], m["cut"], m["copies"]) == (3, 2, 2)
    assert m["ended_rate"] == pytest.approx(0.5) and m["copy_rate"] == pytest.approx(1 / 3)
