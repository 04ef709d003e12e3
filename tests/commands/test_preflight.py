"""Preflight (nep/commands/preflight.py) against local stand-ins: environment variables set and unset, a
local directory as model, a closed port as the hub, a fake hub cache, moto's S3 server."""

from __future__ import annotations

import copy
import re
import shutil
import socket
from pathlib import Path

import pytest
import yaml
from conftest import REPO_ROOT, git

from nep.commands import preflight
from nep.config.schema import validate

PARAMS = validate(yaml.safe_load((REPO_ROOT / "params.yaml").read_text()))
SECRET = "sk-test-never-printed"


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


@pytest.fixture
def offline_hub(monkeypatch, tmp_path):
    """The hub is a closed port on loopback; the hub cache an empty directory; no GPU."""
    env = {"HF_ENDPOINT": closed_port_url(), "HF_HUB_CACHE": str(tmp_path / "hub-cache")}
    monkeypatch.setattr("nep.util.device.cuda_available", lambda: False)
    return env


def run(params: dict, env: dict, root: Path = REPO_ROOT) -> dict[str, preflight.Check]:
    return {c.param: c for c in preflight.checks(params, root=root, env=env)}


def with_(**changes) -> dict:
    params = copy.deepcopy(PARAMS)
    for dotted, value in changes.items():
        *parents, key = dotted.split("__")
        node = params
        for name in parents:
            node = node[name]
        node[key] = value
    return params


def test_the_offline_default_needs_nothing(offline_hub):
    rows = run(PARAMS, offline_hub)
    assert [r for r in rows.values() if r.status == "fail"] == []


def test_api_keys_are_checked_where_an_llm_backend_is_chosen(offline_hub):
    params = with_(label__backend="openai", judge__backend="openai", judge__api_key_env="JUDGE_KEY")
    rows = run(params, offline_hub)
    assert rows["label.api_key_env"].status == "fail" and "export OPENAI_API_KEY" in rows["label.api_key_env"].note
    assert rows["judge.api_key_env"].status == "fail" and "JUDGE_KEY" in rows["judge.api_key_env"].note
    rows = run(params, {**offline_hub, "OPENAI_API_KEY": SECRET, "JUDGE_KEY": SECRET})
    assert rows["label.api_key_env"].status == rows["judge.api_key_env"].status == "pass"
    assert SECRET not in preflight.table(list(rows.values()))
    assert run(with_(label__backend="openai", label__api_key_env=""), offline_hub)["label.api_key_env"].status == "skip"


def test_a_key_a_header_cannot_carry_fails_without_printing_it(offline_hub):
    params = with_(label__backend="openai")
    row = run(params, {**offline_hub, "OPENAI_API_KEY": SECRET + "\r"})["label.api_key_env"]
    assert row.status == "fail" and "OPENAI_API_KEY holds U+000D (carriage return)" in row.note
    assert SECRET not in preflight.table([row])
    assert run(params, {**offline_hub, "OPENAI_API_KEY": f" {SECRET}\t"})["label.api_key_env"].status == "pass"


def test_openai_predictor_key(offline_hub):
    predictors = {**PARAMS["generate"]["predictors"],
                  "served": {"kind": "openai", "model": "m", "api_key_env": "SERVED_KEY", "needs": "x"}}
    row = run(with_(generate__predictors=predictors), offline_hub)["generate.predictors.served.api_key_env"]
    assert row.status == "fail" and "SERVED_KEY" in row.note


def test_a_local_directory_stands_in_for_a_hub_model(offline_hub, tmp_path):
    (tmp_path / "model").mkdir()
    row = run(with_(finetune__base_model=str(tmp_path / "model")), offline_hub)["finetune.base_model"]
    assert row.status == "pass"


def test_an_unreachable_hub_is_named_with_its_param(offline_hub):
    row = run(with_(finetune__base_model="someone/some-model"), offline_hub)["finetune.base_model"]
    assert row.status == "fail" and "hub unreachable" in row.note and "HF_HUB_OFFLINE" in row.note


def test_hf_hub_offline_uses_the_cache(offline_hub, tmp_path):
    env = {**offline_hub, "HF_HUB_OFFLINE": "1"}
    params = with_(ingest__source="hf", ingest__languages=["Python"])
    row = run(params, env)["ingest.hf.dataset"]
    assert row.status == "fail" and "HF_HUB_OFFLINE is set" in row.note
    # the hub cache's layout: refs/<revision> → snapshots/<commit>/<file>
    hf = params["ingest"]["hf"]
    repo = Path(env["HF_HUB_CACHE"]) / f"datasets--{hf['dataset'].replace('/', '--')}"
    snapshot = repo / "snapshots" / hf["revision"] / "data" / "python"
    snapshot.mkdir(parents=True)
    (snapshot / "data.jsonl").write_text("{}\n")
    row = run(params, env)["ingest.hf.dataset"]
    assert row.status == "pass" and "cached" in row.note


def test_gpu_and_gpu_packages_where_chosen(offline_hub, monkeypatch):
    params = with_(finetune__backend="unsloth")
    rows = run(params, offline_hub)
    assert rows["finetune.backend"].status == "fail"  # no CUDA here (and the package row shares the param)
    checks = [c for c in preflight.checks(params, root=REPO_ROOT, env=offline_hub) if c.param == "finetune.backend"]
    assert {c.what for c in checks} == {"CUDA GPU for finetune (unsloth)", "package unsloth"}
    assert "no CUDA GPU" in checks[0].note
    assert preflight.package_check("surely_not_installed_pkg", "p").note.startswith("not installed: pip install -r requirements-gpu.txt")
    assert preflight.package_check("yaml", "p").status == "pass"
    # fp16 training needs a GPU; bf16 runs on the CPU (autocast) and is not checked
    assert run(with_(finetune__precision="fp16"), offline_hub)["finetune.precision"].status == "fail"
    assert "finetune.precision" not in run(with_(finetune__precision="bf16"), offline_hub)


def offline_project(tmp_path, offline_hub, monkeypatch) -> None:
    """A committed copy of the project's params, dvc.yaml and presets in `tmp_path` (the cwd), with
    the hub an unreachable stand-in."""
    for name in ("params.yaml", "dvc.yaml"):
        shutil.copy(REPO_ROOT / name, tmp_path / name)
    shutil.copytree(REPO_ROOT / "presets", tmp_path / "presets")
    (tmp_path / ".dvc").mkdir()
    (tmp_path / ".dvc" / "config").write_text("")
    git(tmp_path, "init", "-q")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-q", "-m", "init")
    monkeypatch.chdir(tmp_path)
    for key, value in offline_hub.items():
        monkeypatch.setenv(key, value)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)


def test_the_paper_preset_reports_hub_and_gpu(offline_hub, tmp_path, monkeypatch, capsys):
    """`nep preflight --preset paper` on this machine: hub and GPU missing, exit 1."""
    offline_project(tmp_path, offline_hub, monkeypatch)
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    assert preflight.main(["--preset", "paper"]) == 1
    out = capsys.readouterr().out
    for param in ("ingest.hf.dataset", "finetune.base_model", "finetune.backend", "label.api_key_env",
                  "judge.api_key_env", "generate.predictors.finetuned.kind"):
        assert re.search(rf"^FAIL .*  {re.escape(param)}  ", out, re.M), param
    assert "CUDA GPU" in out and "hub unreachable" in out
    assert "check(s) failed" in out


def test_a_bad_param_is_a_failed_check(tmp_path, capsys):
    bad = tmp_path / "params.yaml"
    bad.write_text(yaml.safe_dump({"label": {"concurency": 4}}))
    assert preflight.main(["--params", str(bad)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "label.concurency: unknown key (did you mean label.concurrency?)" in out


@pytest.fixture
def fake_hub():
    """A local HTTP server answering the hub's repo-info API for `someone/*` (404 otherwise)."""
    import json
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    class Hub(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_GET(self):
            kind, _, rest = self.path.removeprefix("/api/").partition("/")
            repo = "/".join(rest.split("/")[:2]).split("?")[0]
            found = kind in ("models", "datasets") and repo.startswith("someone/")
            body = json.dumps({"id": repo, "sha": "0" * 40} if found else {"error": "Repository not found"}).encode()
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            if not found:
                self.send_header("X-Error-Code", "RepoNotFound")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_a_reachable_hub_passes_and_a_missing_repo_is_named(fake_hub, tmp_path, monkeypatch):
    monkeypatch.setattr("nep.util.device.cuda_available", lambda: False)
    env = {"HF_ENDPOINT": fake_hub, "HF_HUB_CACHE": str(tmp_path / "cache")}
    assert run(with_(finetune__base_model="someone/model"), env)["finetune.base_model"].status == "pass"
    row = run(with_(finetune__base_model="nobody/model"), env)["finetune.base_model"]
    assert row.status == "fail" and "RepositoryNotFoundError" in row.note and "HF_TOKEN" in row.note


def test_the_paper_models_preset_names_each_model_it_cannot_reach(offline_hub, tmp_path, monkeypatch, capsys):
    """Offline, every released model and base model is one FAIL row naming its predictor; vLLM and
    the GPU are not failures there, since each entry falls back to transformers."""
    offline_project(tmp_path, offline_hub, monkeypatch)
    assert preflight.main(["--preset", "paper-models"]) == 1
    out = capsys.readouterr().out
    preset = yaml.safe_load((REPO_ROOT / "presets/paper-models.yaml").read_text())
    models = {name: e["model"] for name, e in preset["generate"]["predictors"].items() if e}
    assert len(models) == 15 and sum(m.startswith("lurf21/") for m in models.values()) == 9
    for name, model in models.items():
        assert re.search(rf"^FAIL +hub model {re.escape(model)} +generate\.predictors\.{re.escape(name)}\.model ", out, re.M), name
        assert not re.search(rf"^FAIL .*generate\.predictors\.{re.escape(name)}\.kind", out, re.M), name
        assert re.search(rf"^SKIP .*generate\.predictors\.{re.escape(name)}\.fallback .*hf generates instead", out, re.M)


@pytest.mark.parametrize("pins", [{"nosuch": "abc"}, {"./": "0" * 40}])
def test_the_source_checks_its_pins_and_revisions(offline_hub, pins):
    """Issue 31 item 5: a pin naming no repository fails in one row naming ingest.git.pins; "./" is
    matched to "." (normalised), so its bad commit is reported against that pin."""
    rows = run(with_(ingest__git__pins=pins), offline_hub)
    key = next(iter(pins))
    row = rows["ingest.git.pins" if key == "nosuch" else f"ingest.git.pins[{key!r}]"]
    assert row.status == "fail"
    assert ("names no repository of ingest.git.repos" if key == "nosuch" else "is not a revision") in row.note


def test_a_jsonl_source_checks_its_files(offline_hub, tmp_path):
    found = tmp_path / "a.jsonl"
    found.write_text("{}\n")
    rows = list(preflight.checks(with_(ingest__source="jsonl", ingest__jsonl__paths=[str(found), "nope.jsonl"]),
                                 root=REPO_ROOT, env=offline_hub))
    files = [(r.status, r.what) for r in rows if r.param == "ingest.jsonl.paths"]
    assert files == [("pass", f"file {found}"), ("fail", "file nope.jsonl")]
