"""Failures that are caught before any work, in one line naming the param and the fix: revisions a
repository lacks, shallow clones, an unreachable hub; and the small things a run prints (banner,
expected warnings, Ctrl-C)."""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import warnings
from collections import Counter
from pathlib import Path

import pytest
from conftest import REPO_ROOT, git

from nep.data.sources.git import git_records, git_state, revisions
from nep.util.errors import NepError

PIN = "f19d35db8f82419e1a9b66f801f6b96218ee4912"  # the offline default's pin: a commit of this repository


def _history(git_repo, n: int = 3) -> tuple[Path, list[str]]:
    repo, commit = git_repo
    shas = [commit({"a.py": f"x = {i}\ny = {i}\n"}) for i in range(n)]
    return repo, shas


def test_pins_apply_to_their_repository_and_rev_to_the_others():
    assert revisions([".", "/r"], "", {".": PIN}) == [(PIN, "ingest.git.pins['.']"), ("HEAD", "ingest.git.rev")]
    # a rev set (HEAD included) applies to every repository, pinned ones too
    assert revisions([".", "/r"], "v1..HEAD", {".": PIN}) == [("v1..HEAD", "ingest.git.rev")] * 2
    assert revisions([".", "/r"], "HEAD", {".": PIN}) == [("HEAD", "ingest.git.rev")] * 2


def test_the_default_pin_does_not_touch_other_repositories(git_repo):
    """The worked example lists other repositories only: they are mined at HEAD, as written."""
    repo, shas = _history(git_repo)
    state = git_state([str(repo)], "", {".": PIN})
    assert state[0]["revs"] == [shas[-1]]


@pytest.mark.parametrize("rev", ["no-such-branch", PIN, "HEAD~1..nope"])
def test_a_revision_the_repository_lacks_is_one_line_naming_rev(git_repo, rev):
    repo, _ = _history(git_repo)
    with pytest.raises(NepError) as caught:
        git_state([str(repo)], rev)
    line = str(caught.value)
    assert "\n" not in line and line.startswith("ingest.git.rev:") and "-S ingest.git.rev=HEAD" in line
    with pytest.raises(NepError):  # mining checks too, before reading any commit
        list(git_records([str(repo)], rev=rev, drops=Counter(), progress=False))


def test_a_shallow_clone_says_unshallow(git_repo, tmp_path):
    repo, shas = _history(git_repo)
    clone = tmp_path / "shallow"
    git(tmp_path, "clone", "-q", "--depth", "1", f"file://{repo}", str(clone))
    with pytest.raises(match=r"shallow clone.*fetch --unshallow.*-S ingest\.git\.rev=HEAD"):
        git_state([str(clone)], shas[0])
    with pytest.raises(NepError, match=r"ingest\.git\.pins\[.*fetch --unshallow.*-S ingest\.git\.rev=HEAD"):
        git_state([str(clone)], "", {str(clone): shas[-1]})  # a pin's history is cut short
    assert git_state([str(clone)], "HEAD")[0]["shallow"] is True  # HEAD of a shallow clone: mined, counted


def test_the_ingest_stage_reports_a_bad_revision_in_one_line(tmp_path):
    project = tmp_path / "p"
    project.mkdir()
    git(project, "init", "-q")
    (project / "a.py").write_text("x = 1\n")
    git(project, "add", "a.py")
    git(project, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "a")
    (project / "params.yaml").write_text("ingest:\n  git:\n    rev: nope\n")
    done = subprocess.run([sys.executable, "-m", "stages.ingest"], cwd=project, capture_output=True, text=True,
                          env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin", "NEP_CACHE_DIR": str(tmp_path / "c")})
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert "ingest.git.rev: 'nope' is not a revision" in done.stderr.splitlines()[-1]


@pytest.mark.parametrize("rev", ["", "HEAD"])
def test_an_empty_repository_names_the_repos_param_not_a_rev_already_in_use(tmp_path, rev):
    """Issue 31 item 8: it said `ingest.git.rev: 'HEAD' is not a revision ... (-S ingest.git.rev=HEAD ...)`."""
    empty = tmp_path / "empty"
    empty.mkdir()
    git(empty, "init", "-q")
    with pytest.raises(NepError) as caught:
        git_state([str(empty)], rev)
    line = str(caught.value)
    assert line == (f"ingest.git.repos: {empty} is an empty repository (no commit to mine) "
                    "(commit to it, or remove it from ingest.git.repos)")


def test_an_unborn_head_suggests_a_branch_not_the_head_it_already_uses(git_repo):
    repo, _ = _history(git_repo)
    git(repo, "checkout", "-q", "--orphan", "unborn")
    with pytest.raises(NepError) as caught:
        git_state([str(repo)], "HEAD")
    line = str(caught.value)
    assert line.startswith("ingest.git.rev: 'HEAD' is not a revision") and "ingest.git.rev=HEAD" not in line
    assert f"check out a branch in {repo}" in line


@pytest.mark.parametrize("pins", [{"nosuch": "abc"}, {"nosuch": PIN}, {"./sub": "abc"}])
def test_a_pin_naming_no_repository_is_refused_in_one_line(git_repo, pins):
    """Issue 31 item 5: such a pin left every repository unpinned and mined `.` at HEAD, silently."""
    repo, _ = _history(git_repo)
    key = next(iter(pins))
    with pytest.raises(NepError) as caught:
        git_state([str(repo)], "", pins)
    assert str(caught.value) == (f"ingest.git.pins: {key!r} names no repository of ingest.git.repos "
                                 f"[{str(repo)!r}] (key each pin by a repository as listed in ingest.git.repos)")
    with pytest.raises(NepError, match="names no repository"):  # mining refuses it too, before any commit
        list(git_records([str(repo)], pins=pins, drops=Counter(), progress=False))


def test_pins_match_repositories_by_normalised_path(git_repo):
    repo, shas = _history(git_repo)
    assert revisions([str(repo)], "", {f"{repo}/": shas[0]}) == [(shas[0], f"ingest.git.pins[{str(repo) + '/'!r}]")]
    assert git_state([str(repo)], "", {f"{repo}/./": shas[0]})[0]["revs"] == [shas[0]]
    assert revisions(["."], "", {"./": PIN}) == [(PIN, "ingest.git.pins['./']")]  # the typo pins "."
    with pytest.raises(NepError, match=r"ingest\.git\.pins: '\.' and '\./' both pin '\.'"):
        revisions(["."], "", {".": PIN, "./": PIN})


# ---------------------------------------------------------------- the hub


def _silent_server() -> tuple[socket.socket, int]:
    """A server on 127.0.0.1 that accepts connections and never answers (a black hole)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    held = []
    threading.Thread(target=lambda: [held.append(server.accept()) for _ in range(8)], daemon=True).start()
    return server, server.getsockname()[1]


@pytest.mark.parametrize("setup", ["offline", "closed port", "silent server"])
def test_an_unreachable_hub_says_unreachable_not_no_data(setup, tmp_path, monkeypatch):
    from huggingface_hub import constants

    from nep.data.sources import hub as sources

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", setup == "offline")
    server = None
    if setup == "closed port":
        probe = socket.socket()
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
        probe.close()
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
    elif setup == "silent server":
        server, port = _silent_server()
        monkeypatch.setattr(constants, "ENDPOINT", f"http://127.0.0.1:{port}")
        monkeypatch.setattr(sources, "HUB_PROBE_TIMEOUT_S", 0.5)
    try:
        with pytest.raises(NepError) as caught:
            sources.hf_files(dataset="bigcode/commitpackft", revision="fc56fe33c030c6daa414c2b112c932b8eed085e6",
                             languages=["Python"])
    finally:
        if server is not None:
            server.close()
    line = str(caught.value)
    assert "unreachable" in line and "no data" not in line and "ingest.hf.dataset" in line and "\n" not in line


# ---------------------------------------------------------------- what a run prints


def test_banner_describes_inputs(tmp_path, capsys):
    from nep.util.console import banner, describe

    (tmp_path / "a.jsonl").write_text('{"x": 1}\n{"x": 2}\n')
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "f").write_bytes(b"x" * 2048)
    assert describe(tmp_path / "a.jsonl") == f"{tmp_path / 'a.jsonl'} (2 rows, 18 B)"
    assert describe(tmp_path / "d") == f"{tmp_path / 'd'} (1 files, 2.0 kB)"
    assert describe(tmp_path / "none").endswith("(missing)")
    line = banner("filter", "keep commits", [tmp_path / "a.jsonl"])
    assert capsys.readouterr().err == line + "\n" and line.startswith("== filter: keep commits <- ")


def test_split_banner_names_the_external_test_set_it_reads(tmp_path, monkeypatch, capsys):
    """A user's own test file (split.external_test) is what the banner names, not only process's."""
    import stages.split
    from nep.config.schema import Split

    (tmp_path / "mine.jsonl").write_text('{"x": 1}\n')
    sections = {"split": Split(strategy="external", external_test=str(tmp_path / "mine.jsonl"))}
    monkeypatch.setattr(stages.split, "load_section", lambda name: sections[name])
    stages.split.banner()
    line = capsys.readouterr().err
    assert "data/process/examples.jsonl" in line and f"{tmp_path / 'mine.jsonl'} (1 rows" in line
    sections["split"] = Split(strategy="external", external_test="lurf21/NextEditPrediction",
                              external_train="lurf21/NextEditPrediction")
    stages.split.banner()
    line = capsys.readouterr().err
    assert "data/process" not in line and line.count("lurf21/NextEditPrediction (hub)") == 2


def test_expected_warnings_are_silenced_only_inside_the_block():
    from nep.util.console import expected_warnings

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with expected_warnings((UserWarning, "Setting `save_embedding_layers`")):
            warnings.warn("Setting `save_embedding_layers` to `True`", UserWarning, stacklevel=1)
            warnings.warn("something else", UserWarning, stacklevel=1)
        warnings.warn("Setting `save_embedding_layers` to `True`", UserWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["something else", "Setting `save_embedding_layers` to `True`"]


def test_expected_log_drops_only_matching_records_inside_the_block(caplog):
    import logging

    from nep.util.console import expected_log

    log = logging.getLogger("trl.trainer.sft_trainer")
    with caplog.at_level(logging.WARNING), expected_log("trl.trainer.sft_trainer", "not a prefix"):
        log.warning("The tokenized prompt is not a prefix of the tokenized prompt+completion")
        log.warning("another")
    log.warning("is not a prefix, outside")
    assert [r.getMessage() for r in caplog.records] == ["another", "is not a prefix, outside"]


@pytest.mark.parametrize("resumable", [False, True])
def test_ctrl_c_is_one_line(resumable, capsys):
    from nep.util.cli import run_main

    def interrupted():
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as caught:
        run_main(interrupted, "generate", resumable=resumable, in_project=False)
    err = capsys.readouterr().err.strip()
    assert caught.value.code == 130 and "\n" not in err
    assert err == "generate: interrupted" + ("; a rerun resumes where it stopped" if resumable else "")


def test_dataset_bars_are_quiet_only_inside_the_block():
    import datasets

    from nep.util.console import quiet_dataset_bars

    datasets.enable_progress_bars()
    with quiet_dataset_bars():
        assert datasets.are_progress_bars_disabled()
    assert not datasets.are_progress_bars_disabled()
