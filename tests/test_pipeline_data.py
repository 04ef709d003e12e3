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
