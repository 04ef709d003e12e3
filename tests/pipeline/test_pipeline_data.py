"""The data stages end to end through DVC, in a temporary copy of the project, on a synthetic
multi-language history (tests/history.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import project_on_history, run_dvc

pytestmark = pytest.mark.slow


dvc = run_dvc


def metrics(project: Path, stage: str) -> dict:
    return json.loads((project / "metrics" / f"{stage}.json").read_text())


def test_data_stages_through_dvc(tmp_path):
    project = project_on_history(tmp_path, repos=2, commits_per_repo=20)

    dvc(project, "repro", "split")
    ingest, filtered, label, split = (metrics(project, s) for s in ("ingest", "filter", "label", "split"))
    assert ingest["records_out"] >= 60 and ingest["dropped.not_source"] > 0
    assert filtered["records_in"] == ingest["records_out"] and filtered["records_out"] >= 40
    assert 0 < label["yes"] < label["records_out"]
    assert split["strategy"] == "repo" and split["train"] > 0 and split["test"] > 0
    train = [json.loads(line) for line in (project / "data/split/train.jsonl").read_text().splitlines()]
    test = [json.loads(line) for line in (project / "data/split/test.jsonl").read_text().splitlines()]
    assert not {e["repos"] for e in train} & {e["repos"] for e in test}
    assert all(e["text"] == e["prompt"] + e["completion"] for e in train + test)

    # ingest always re-mines; its records are the same, so nothing downstream re-runs
    out = dvc(project, "repro", "split")
    assert "Running stage 'ingest'" in out and "Running stage 'filter'" not in out

    # a filter param re-runs filter and what follows, on the same ingested records
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    ingest_md5 = lock["stages"]["ingest"]["outs"][0]["md5"]
    out = dvc(project, "exp", "run", "-S", "filter.max_chunk_lines=3", "split")
    assert "Running stage 'filter'" in out and "Running stage 'split'" in out
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    assert lock["stages"]["ingest"]["outs"][0]["md5"] == ingest_md5
    assert metrics(project, "filter")["records_out"] < filtered["records_out"]
    assert metrics(project, "ingest") == ingest


def test_a_file_source_through_dvc_is_read_once(tmp_path):
    """A JSONL source: filter reads it through ingest's index; a no-op repro re-reads nothing, a
    changed file re-runs both; no stage leaves a temporary file behind."""
    project = project_on_history(tmp_path, repos=1, commits_per_repo=12)
    dvc(project, "repro", "ingest")
    records = (project / "data/ingest/commits.jsonl").read_text().splitlines()
    source = tmp_path / "commits.jsonl"
    source.write_text("\n".join(records[:-1]) + "\n")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["ingest"]["source"] = "jsonl"
    params["ingest"]["jsonl"]["paths"] = [str(source)]
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))

    dvc(project, "repro", "filter")
    assert not (project / "data/ingest/commits.jsonl").exists()  # the source is not copied
    assert metrics(project, "ingest")["records_out"] == len(records) - 1
    assert metrics(project, "filter")["records_in"] == len(records) - 1
    lock = (project / "dvc.lock").read_text()
    out = dvc(project, "repro", "filter")
    assert "Running stage 'filter'" not in out and (project / "dvc.lock").read_text() == lock

    with source.open("a") as f:
        f.write(records[-1] + "\n")
    out = dvc(project, "repro", "filter")
    assert "Running stage 'filter'" in out
    assert metrics(project, "filter")["records_in"] == len(records)
    assert not list(project.rglob("*.tmp"))
