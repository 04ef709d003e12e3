"""An S3 remote (dvc-s3) against moto's S3 server on loopback: push, wipe, pull, compare.

The credentials are fake and reach DVC only through the environment, never a config file.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
from pathlib import Path

import pytest
from conftest import git, run_dvc

ACCESS_KEY = "AKIAFAKEFORNEPTESTS01"
SECRET_KEY = "fake-secret-for-nep-tests-only"
BUCKET = "nep-remote"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def s3_endpoint(monkeypatch):
    from moto.server import ThreadedMotoServer

    env = {
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    for key in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(key, raising=False)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    try:
        import boto3

        boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()


dvc = run_dvc  # conftest's one way of running dvc


PIPELINE = """\
stages:
  make:
    cmd: python -c "import pathlib; pathlib.Path('data/make').mkdir(parents=True, exist_ok=True); pathlib.Path('data/make/out.txt').write_text('made by a stage\\\\n')"
    deps: [data/raw.txt]
    outs: [data/make/out.txt]
  model:
    cmd: python -c "import pathlib; p = pathlib.Path('models/m'); p.mkdir(parents=True, exist_ok=True); (p / 'weights.bin').write_bytes(bytes(range(256)) * 64); (p / 'config.json').write_text('{}')"
    deps: [data/make/out.txt]
    outs: [models/m]
"""


@pytest.mark.slow
def test_push_wipe_pull_roundtrip(tmp_path: Path, s3_endpoint: str):
    project = tmp_path / "project"
    project.mkdir()
    git(project, "init", "-q")
    dvc(project, "init", "-q")
    (project / "data").mkdir()
    (project / "data/raw.txt").write_text("raw input\n")
    dvc(project, "add", "-q", "data/raw.txt")
    (project / "dvc.yaml").write_text(PIPELINE)
    dvc(project, "repro", "-q")
    expected = {
        p: (project / p).read_bytes()
        for p in ("data/raw.txt", "data/make/out.txt", "models/m/weights.bin", "models/m/config.json")
    }

    dvc(project, "remote", "add", "-d", "s3", f"s3://{BUCKET}/nep/cache")
    dvc(project, "remote", "modify", "s3", "endpointurl", s3_endpoint)
    dvc(project, "push")

    shutil.rmtree(project / ".dvc/cache")
    for path in ("data/raw.txt", "data/make", "models"):
        target = project / path
        shutil.rmtree(target) if target.is_dir() else target.unlink()
    dvc(project, "pull")

    for path, content in expected.items():
        assert (project / path).read_bytes() == content, path
    from dvc.repo import Repo

    with Repo(str(project)) as repo:
        assert repo.status() == {}  # pipeline and data in sync again

    import boto3

    objects = boto3.client("s3", endpoint_url=s3_endpoint).list_objects_v2(Bucket=BUCKET, Prefix="nep/cache/")
    assert objects["KeyCount"] >= 4  # raw, out, weights, config (+ the directory's .dir manifest)

    config = (project / ".dvc/config").read_text()
    assert "endpointurl" in config and f"s3://{BUCKET}" in config
    assert ACCESS_KEY not in config and SECRET_KEY not in config
    assert not (project / ".dvc/config.local").exists()


def test_preflight_checks_each_s3_remotes_bucket(tmp_path: Path, s3_endpoint: str):
    """`nep preflight` finds the bucket of each S3 remote, and says how to create a
    missing one (a first `dvc push` to a new bucket fails until it exists)."""
    from nep.commands.preflight import bucket_check, s3_remotes

    project = tmp_path / "project"
    (project / ".dvc").mkdir(parents=True)
    (project / ".dvc/config").write_text(  # as `dvc remote add` / `dvc remote modify` write it
        f"[core]\n    no_scm = True\n    remote = s3\n"
        f"['remote \"s3\"']\n    url = s3://{BUCKET}/nep\n    endpointurl = {s3_endpoint}\n"
        f"['remote \"new\"']\n    url = s3://nep-not-created-yet/nep\n    endpointurl = {s3_endpoint}\n"
        f"['remote \"local\"']\n    url = {tmp_path / 'elsewhere'}\n"
    )
    remotes = s3_remotes(project)
    assert sorted(remotes) == ["new", "s3"]
    assert bucket_check("s3", remotes["s3"]).status == "pass"
    missing = bucket_check("new", remotes["new"])
    assert missing.status == "fail"
    assert missing.note == f"no such bucket: create it (aws --endpoint-url {s3_endpoint} s3 mb s3://nep-not-created-yet)"


def test_the_readmes_bucket_command_creates_the_bucket(s3_endpoint: str, monkeypatch):
    """docs/operations.md, "Remote storage on S3": the one-line bucket creation works as written (boto3 reads
    AWS_ENDPOINT_URL, here moto's server, as it reads the credentials: from the environment)."""
    import re
    import subprocess
    import sys

    import boto3
    from conftest import REPO_ROOT

    readme = (REPO_ROOT / "docs" / "operations.md").read_text()
    command = re.search(r'^python -c "(import boto3; boto3\.client\(\'s3\'\)\.create_bucket\([^"]*\))"', readme, re.M)
    assert command, "docs/operations.md: the bucket creation line"
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_endpoint)
    subprocess.run([sys.executable, "-c", command.group(1)], check=True, env=os.environ.copy())
    names = [b["Name"] for b in boto3.client("s3", endpoint_url=s3_endpoint).list_buckets()["Buckets"]]
    assert "my-bucket" in names


def test_preflight_warns_about_an_s3_remote_without_timeouts_or_verify(tmp_path: Path):
    from nep.commands.preflight import S3_REMOTE_SETTINGS, remote_settings_check, s3_remotes, table

    project = tmp_path / "project"
    (project / ".dvc").mkdir(parents=True)
    (project / ".dvc/config").write_text(
        "[core]\n    no_scm = True\n"
        f"['remote \"plain\"']\n    url = s3://{BUCKET}/a\n"
        f"['remote \"tuned\"']\n    url = s3://{BUCKET}/b\n    connect_timeout = 5\n    read_timeout = 15\n"
        "    verify = true\n"
        f"['remote \"half\"']\n    url = s3://{BUCKET}/c\n    read_timeout = 15\n"
    )
    (project / ".dvc/config.local").write_text("['remote \"half\"']\n    connect_timeout = 5\n")  # --local counts
    remotes = s3_remotes(project)
    env = {"AWS_MAX_ATTEMPTS": "1"}
    plain = remote_settings_check("plain", remotes["plain"], {})
    assert plain.status == "warn"
    assert plain.note.startswith("connect_timeout, read_timeout, AWS_MAX_ATTEMPTS, verify unset")
    for key, value in S3_REMOTE_SETTINGS.items():
        assert f"dvc remote modify plain {key} {value}" in plain.note
    assert "export AWS_MAX_ATTEMPTS=1" in plain.note
    assert remote_settings_check("tuned", remotes["tuned"], env).status == "pass"
    assert remote_settings_check("tuned", remotes["tuned"], {}).note.startswith("AWS_MAX_ATTEMPTS unset")
    half = remote_settings_check("half", remotes["half"], env)
    assert half.status == "warn" and half.note.startswith("verify unset (a changed object is pulled without error)")
    assert "WARN" in table([plain, half])


@pytest.mark.slow
def test_the_documented_remote_settings_verify_pulls_and_bound_a_stalled_push(tmp_path: Path, s3_endpoint: str):
    """DVC's defaults pull a changed object with rc 0; `verify true` refuses it. With the timeouts
    and AWS_MAX_ATTEMPTS set, a push to an endpoint that accepts connections and never answers ends
    with an error (benchmarks/s3_stall.py measures how soon)."""
    import boto3

    project = tmp_path / "project"
    project.mkdir()
    git(project, "init", "-q")
    dvc(project, "init", "-q")
    (project / "data.txt").write_text("the real data\n")
    dvc(project, "add", "-q", "data.txt")
    dvc(project, "remote", "add", "-d", "s3", f"s3://{BUCKET}/verify")
    dvc(project, "remote", "modify", "s3", "endpointurl", s3_endpoint)
    dvc(project, "push", "-q")
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    [key] = [o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix="verify/")["Contents"]]
    s3.put_object(Bucket=BUCKET, Key=key, Body=b"changed on the remote\n")

    def pull() -> subprocess.CompletedProcess:
        shutil.rmtree(project / ".dvc/cache", ignore_errors=True)
        (project / "data.txt").unlink(missing_ok=True)
        return subprocess.run(["dvc", "pull"], cwd=project, capture_output=True, text=True)

    assert pull().returncode == 0 and (project / "data.txt").read_text() == "changed on the remote\n"  # the default
    dvc(project, "remote", "modify", "s3", "verify", "true")
    refused = pull()
    assert refused.returncode != 0 and not (project / "data.txt").exists()

    stalled = socket.socket()  # accepts connections (the backlog), never answers
    stalled.bind(("127.0.0.1", 0))
    stalled.listen(64)
    try:
        (project / "more.txt").write_text("more\n")
        dvc(project, "add", "-q", "more.txt")
        dvc(project, "remote", "modify", "s3", "endpointurl", f"http://127.0.0.1:{stalled.getsockname()[1]}")
        dvc(project, "remote", "modify", "s3", "connect_timeout", "1")
        dvc(project, "remote", "modify", "s3", "read_timeout", "1")
        done = subprocess.run(["dvc", "push", "-j", "4"], cwd=project, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "AWS_MAX_ATTEMPTS": "1"})
    finally:
        stalled.close()
    assert done.returncode != 0 and "timeout" in (done.stdout + done.stderr).lower()
