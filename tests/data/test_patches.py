"""The `patches` source (git format-patch files, nep/data/sources/patches.py), and the source
interface every source is reached through (nep/data/sources/base.py)."""

from __future__ import annotations

import typing
from collections import Counter
from pathlib import Path

import orjson
import pytest
from conftest import git

from nep.data.sources.git import git_records
from nep.data.sources.patches import patch_files, patch_records
from nep.util.errors import NepError

PY = "".join(f"x{i} = {i}\n" for i in range(30))
FIELDS = ("commit", "old_file", "new_file", "old_contents", "new_contents", "subject", "lang", "timestamp")


def history(git_repo) -> Path:
    repo, commit = git_repo
    commit({"a.py": PY, "b.py": "b = 1", "doc.md": "hi\n"}, message="Start")
    commit({"a.py": PY.replace("x3 = 3", "x3 = 33") + "y = 1\n", "doc.md": "hello\n"}, message="Grow a\n\nWith a body.")
    commit({"a.py": None, "moved.py": PY + "z = 2\n", "b.py": "b = 2"}, message="Rename a; b has no final newline")
    commit({"c.py": "c = 1\n", "b.py": None}, message="Add c, delete b")
    commit({"c.py": "c = 'é'\n"}, message="Non-ASCII: é")
    return repo


def format_patch(repo: Path, out: Path, context: int) -> list[dict]:
    git(repo, "format-patch", "-q", f"--unified={context}", "--root", "-o", str(out), "HEAD")
    drops: Counter = Counter()
    return [r for p in patch_files([str(out)]) for r in patch_records(p, languages=["Python"], drops=drops)], drops


def test_whole_file_patches_give_the_records_git_mines(git_repo, tmp_path):
    repo = history(git_repo)
    records, drops = format_patch(repo, tmp_path / "patches", 1_000_000)
    git_drops: Counter = Counter()
    mined = list(git_records([str(repo)], rev="HEAD", languages=["Python"], drops=git_drops, progress=False))
    key = lambda r: (r["timestamp"], r["new_file"])  # noqa: E731 - git mines newest first, patches come oldest first
    assert [[r[f] for f in FIELDS] for r in sorted(records, key=key)] == [
        [r[f] for f in FIELDS] for r in sorted(mined, key=key)]
    assert len(records) == 4  # a.py, moved.py (a rename with an edit), b.py (no final newline), c.py (UTF-8)
    assert {r["repos"] for r in records} == {"patches"}
    grow = next(r for r in records if r["subject"] == "Grow a")
    assert grow["message"] == "Grow a\n\nWith a body."
    # the same drops, plus the root commit's three files, which git mining skips (no parent to diff)
    assert drops == git_drops + Counter({"added_file": 2, "not_source": 1})
    assert git_drops == Counter({"added_file": 1, "deleted_file": 1, "not_source": 1})


def test_patches_with_too_little_context_are_dropped_not_guessed(git_repo, tmp_path):
    repo = history(git_repo)
    records, drops = format_patch(repo, tmp_path / "patches", 3)
    # only the files a 3-line context covers whole (b.py, c.py) are rebuilt; each checked by blob id
    assert sorted(r["new_file"] for r in records) == ["b.py", "c.py"]
    assert drops["partial_context"] == 2


def test_a_file_that_is_no_patch_is_one_line(tmp_path):
    bad = tmp_path / "x.patch"
    bad.write_text("not a patch\n")
    with pytest.raises(NepError, match=r"^ingest\.patches\.paths: .*x\.patch: not a `git format-patch` file"):
        list(patch_records(bad, languages=["Python"], drops=Counter()))
    with pytest.raises(NepError, match=r"^ingest\.patches\.paths: nope: no such file or directory"):
        patch_files(["nope"])


def test_the_ingest_stage_reads_patches_and_reingests_only_when_they_change(git_repo, tmp_path, monkeypatch):
    from nep.config.schema import Ingest
    from nep.data.sources import patches
    from stages.ingest import run

    repo = history(git_repo)
    out = tmp_path / "patches"
    git(repo, "format-patch", "-q", "--unified=1000000", "--root", "-o", str(out), "HEAD")
    cfg = Ingest(source="patches", languages=["Python"], workers=1, patches={"paths": [str(out)]})
    kwargs = dict(output_dir=tmp_path / "ingest", metrics_path=tmp_path / "m.json", stamps=tmp_path / "s.json")
    metrics = run(cfg, **kwargs)
    assert metrics["records_out"] == 4 and metrics["source"] == "patches"
    mined = [orjson.loads(line) for line in (tmp_path / "ingest/commits.jsonl").read_bytes().splitlines()]
    assert len(mined) == 4
    with monkeypatch.context() as m:
        m.setattr(patches, "patch_records", lambda *a, **k: pytest.fail("re-read"))
        assert run(cfg, **kwargs) == metrics
    first = sorted(out.glob("*.patch"))[1]
    first.unlink()
    assert run(cfg, **kwargs)["records_out"] == 3


def test_every_source_is_registered_and_allowed_by_the_schema():
    """A source is one module plus one registry line; the schema's `ingest.source` choices and
    its `ingest.<name>` sections are the registry's names."""
    from nep.config.schema import Ingest
    from nep.data.sources.base import SOURCES, Source

    allowed = typing.get_args(Ingest.model_fields["source"].annotation)
    assert list(allowed) == SOURCES.names()
    for name in SOURCES.names():
        cls = SOURCES.get(name)
        assert issubclass(cls, Source) and cls.name == name and name in Ingest.model_fields


def test_ingest_its_stage_and_preflight_ask_the_source_not_its_name():
    root = Path(__file__).resolve().parents[2]
    for path in ("nep/data/ingest.py", "stages/ingest.py", "nep/commands/preflight.py"):
        text = (root / path).read_text()
        assert 'source == "' not in text and "source != \"" not in text and '["source"] ==' not in text, path
