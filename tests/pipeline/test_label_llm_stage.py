"""The label stage with `backend: openai` against a local server: in-process, SIGKILLed and resumed,
and end to end through `dvc exp run -S label.backend=openai ...`."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, problem_lines, project_on_history, run_dvc, two_chunk_commit

from nep.config.schema import Label
from nep.llm.cache import cache_path
from nep.llm.verdicts import TooManyFailures
from nep.util.jsonl import read_jsonl, write_jsonl
from stages import label as label_stage

SECRET = f"sk-{uuid.uuid4().hex}"  # made at run time: not even the sources hold it


commit = two_chunk_commit  # conftest's shared record factory


def assert_no_secret(*roots: Path) -> None:
    for root in roots:
        for path in [root] if root.is_file() else root.rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path


def llm_params(server) -> dict:
    return {"backend": "openai", "base_url": server.url, "model": "fake-model", "api_key_env": "NEP_TEST_KEY",
            "concurrency": 4, "timeout_s": 5, "max_attempts": 2, "max_tokens": 5,
            "max_failure_rate": 0.2, "prices": {"fake-model": {"input": 0.15, "output": 0.6}}}


def test_label_stage_openai(tmp_path, fake_openai, monkeypatch):
    monkeypatch.setenv("NEP_TEST_KEY", SECRET)
    records = [commit(i, m) for i, m in enumerate(["", "[[answer:No]]", "[[answer:?]]", "[[fault:*503]]", "", ""])]
    write_jsonl(tmp_path / "in.jsonl", records)
    paths = dict(input_path=tmp_path / "in.jsonl", output_path=tmp_path / "out.jsonl", metrics_path=tmp_path / "m.json",
                 timing_path=tmp_path / "t.json")
    with pytest.raises(TooManyFailures, match=r"2 of 6 labels failed"):
        label_stage.run(Label(**llm_params(fake_openai)), **paths)
    metrics = json.loads((tmp_path / "m.json").read_text())  # written before failing
    assert metrics["llm.failed.server_error"] == 1 and metrics["reason.unparseable"] == 1

    fake_openai.reset_counts()
    metrics = label_stage.run(Label(**{**llm_params(fake_openai), "max_failure_rate": 0.5}), **paths)
    out = list(read_jsonl(tmp_path / "out.jsonl"))
    assert [r["label"] for r in out] == [1, 0, None, None, 1, 1] and [r["commit"] for r in out] == [
        r["commit"] for r in records]
    assert all(r["label_reason"] for r in out)
    assert all(r["old_contents"] == s["old_contents"] for r, s in zip(out, records))
    # only the failing request (2 attempts) and the answer that was not yes/no (never cached) are sent again
    assert fake_openai.requests == 2 + 1
    assert metrics["yes"] == 3 and metrics["null"] == 2 and metrics["llm.cache_hits"] == 4
    assert metrics["llm.requests"] == 6 and metrics["llm.retries"] == 1
    assert {"llm.input_tokens", "llm.output_tokens", "llm.cost_usd", "llm.failed"} <= set(metrics)
    assert not any("time" in k for k in metrics)
    assert set(json.loads((tmp_path / "t.json").read_text())) == {"wall_time_s", "llm.wall_time_s"}
    assert_no_secret(tmp_path, cache_path().parent)


def test_killed_label_stage_resumes_without_resending(tmp_path, fake_openai, monkeypatch):
    n = 60
    write_jsonl(tmp_path / "data/filter/commits.jsonl", [commit(i, "[[delay:0.05]]") for i in range(n)])
    params = {"label": {**llm_params(fake_openai), "max_failure_rate": 0.0}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "NEP_TEST_KEY": SECRET}
    proc = subprocess.Popen([sys.executable, "-m", "stages.label"], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.time() + 30
    while fake_openai.requests < 24 and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    output, _ = proc.communicate()
    assert SECRET.encode() not in output
    assert not (tmp_path / "data/label/commits.jsonl").exists()  # never a partial output
    answered = sqlite3.connect(cache_path()).execute("SELECT COUNT(*) FROM responses").fetchone()[0]
    assert 12 <= answered < n

    fake_openai.reset_counts()
    monkeypatch.setenv("NEP_TEST_KEY", SECRET)
    monkeypatch.chdir(tmp_path)
    metrics = label_stage.run(Label(**params["label"]))
    assert fake_openai.requests == n - answered and metrics["llm.cache_hits"] == answered
    assert metrics["records_out"] == n and metrics["yes"] == n
    assert_no_secret(tmp_path, cache_path().parent)


def test_label_stage_without_key_says_one_line(tmp_path, fake_openai):
    write_jsonl(tmp_path / "data/filter/commits.jsonl", [commit(0)])
    params = {**llm_params(fake_openai), "api_key_env": "NEP_TEST_KEY_UNSET"}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"label": params}))
    env = {k: v for k, v in os.environ.items() if k != "NEP_TEST_KEY_UNSET"}
    proc = subprocess.run([sys.executable, "-m", "stages.label"], cwd=tmp_path, capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(REPO_ROOT)})
    assert proc.returncode == 1 and fake_openai.requests == 0
    lines = problem_lines(proc.stderr)
    assert lines[-1].startswith("label.api_key_env: environment variable NEP_TEST_KEY_UNSET is not set")
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_dvc_exp_run_labels_through_a_local_server(tmp_path, fake_openai, monkeypatch):
    monkeypatch.setenv("NEP_E2E_KEY", SECRET)
    project = project_on_history(tmp_path, repos=1, commits_per_repo=8)

    def dvc(*args: str) -> str:
        out = run_dvc(project, *args, with_stderr=True)
        assert SECRET not in out
        return out

    dvc("exp", "run", "label", "-S", "label.backend=openai", "-S", f"label.base_url={fake_openai.url}",
        "-S", "label.model=fake-model", "-S", "label.api_key_env=NEP_E2E_KEY", "-S", "label.concurrency=8")
    labeled = list(read_jsonl(project / "data/label/commits.jsonl"))
    metrics = json.loads((project / "metrics/label.json").read_text())
    assert labeled and all(r["label"] == 1 and r["label_reason"] == "llm: yes" for r in labeled)
    assert metrics["llm.requests"] == fake_openai.requests == len(labeled) == metrics["records_out"]
    assert "NEP_E2E_KEY" in (project / "dvc.lock").read_text()  # the name is a param; the key is not
    assert_no_secret(project, cache_path().parent)

    fake_openai.reset_counts()
    dvc("repro", "-f", "-s", "label")  # outputs are deleted and rebuilt: every answer comes from the cache
    assert fake_openai.requests == 0
    assert json.loads((project / "metrics/label.json").read_text())["llm.cache_hits"] == len(labeled)
