"""Issue 31 item 2: a damaged ingest output is never trusted nor locked. data/ingest/sources.json
records the size and content hash of index.jsonl and of every file the index points into; ingest
re-creates its output when it is not whole (even when its source did not change), and filter
refuses a damaged one in one line whose advice, followed, fixes it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from conftest import run_dvc

from nep.config.schema import Ingest
from nep.data.filter import paper_filter
from nep.util.errors import NepError
from stages.filter import run as run_filter
from stages.ingest import run as run_ingest

PY = "".join(f"v{i} = {i}\n" for i in range(30))


def truncate(path: Path, n: int = 200) -> None:  # `truncate -s -200 path`
    os.truncate(path, path.stat().st_size - n)


def flip(path: Path, at: int = -100) -> None:  # a same-size byte flip
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.fixture
def mined(git_repo, tmp_path, monkeypatch):
    """A history, its ingest output and filter run on it; returns (run ingest, run filter, out dir)."""
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    repo, commit = git_repo
    for i in range(6):
        commit({"a.py": PY.replace(f"v{i} = {i}\n", f"v{i} = {i}\nw{i} = v{i}\n")
                .replace(f"v{i + 10} = ", f"w{i} += 1\nv{i + 10} = "), "b.py": PY * (i + 1)})
    out = tmp_path / "ingest"
    cfg = Ingest(source="git", languages=["Python"], git={"repos": [str(repo)], "rev": "HEAD"})

    def ingest() -> dict:
        return run_ingest(cfg, output_dir=out, metrics_path=tmp_path / "i.json",
                          stamps=tmp_path / "cache" / "ingest" / "stamps.json")

    def filter_() -> dict:
        return run_filter(paper_filter(workers=1, edit_types=["add", "delete", "replace"]), input_path=out,
                          output_path=tmp_path / "f.jsonl", metrics_path=tmp_path / "f.json")

    ingest()
    filter_()
    return ingest, filter_, out


def snapshot(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())}


@pytest.mark.parametrize(("damaged", "how"), [("commits.jsonl", truncate), ("commits.jsonl", flip),
                                             ("index.jsonl", flip), ("index.jsonl", truncate)])
def test_filter_refuses_a_damaged_ingest_output_and_its_advice_fixes_it(mined, damaged, how):
    ingest, filter_, out = mined
    whole, filtered = snapshot(out), filter_()
    how(out / damaged)
    with pytest.raises(NepError) as caught:
        filter_()
    line = str(caught.value)
    assert "\n" not in line and line.startswith(f"{out / damaged}: ")
    assert line.endswith("(run `dvc repro ingest`: it re-creates data/ingest/ when it is not whole)")
    ingest()  # the advice: the source did not change, but the output is not whole, so it is re-created
    assert snapshot(out) == whole
    assert filter_() == filtered


def test_an_unchanged_whole_output_is_not_read_again(mined, monkeypatch):
    """The no-op run stays cheap: files stamped as hashed are not hashed again, by ingest or filter."""
    import nep.data.ingest
    import nep.data.sources.git

    ingest, filter_, out = mined
    monkeypatch.setattr(nep.data.ingest, "file_xxh3", lambda *a: pytest.fail("re-hashed"))
    monkeypatch.setattr(nep.data.sources.git, "git_records", lambda *a, **k: pytest.fail("re-mined"))
    ingest()
    filter_()


@pytest.mark.slow
def test_dvc_repro_heals_a_truncated_and_a_flipped_ingest_output(tmp_path):
    """The reproduction as written: `truncate -s -200 data/ingest/commits.jsonl` then `dvc repro`;
    and a same-size byte flip. Both heal to the bytes of the undamaged run, and never get locked."""
    from conftest import project_on_history

    project = project_on_history(tmp_path, repos=1, commits_per_repo=12)
    env = {"NEP_CACHE_DIR": str(tmp_path / "cache")}
    run_dvc(project, "repro", "filter", env=env)
    mined = project / "data/ingest/commits.jsonl"
    whole, lock = mined.read_bytes(), (project / "dvc.lock").read_text()
    for damage in (truncate, flip):
        damage(mined)
        run_dvc(project, "repro", "filter", env=env)
        assert mined.read_bytes() == whole
        assert (project / "dvc.lock").read_text() == lock
