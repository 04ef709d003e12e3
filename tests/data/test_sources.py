"""Ingest sources: git repositories the tests build, JSONL/Parquet files, a local CommitPackFT
stand-in through `datasets`; and tiktoken working offline."""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import git

from nep.data.sources.files import jsonl_records
from nep.data.sources.git import git_records
from nep.data.sources.hub import hf_records
from nep.util.errors import NepError

PY = "".join(f"x{i} = {i}\n" for i in range(10))


def mine(repo: Path, **kwargs) -> tuple[list[dict], Counter]:
    drops: Counter = Counter()
    records = list(git_records([str(repo)], drops=drops, progress=False, **kwargs))
    return records, drops


def test_git_source_handles_renames_binary_non_utf8_merges_and_huge_files(git_repo):
    repo, commit = git_repo
    commit({"a.py": PY, "b.bin.c": b"\x00\x01", "latin.py": "x = 1\n", "big.js": "a\n", "doc.md": "hi\n",
            "keep.go": "package a\n", "m.py": "m = 1\n"}, date="2024-01-01T00:00:00+00:00")
    first = commit({"a.py": PY + "y = 2\n", "doc.md": "hello\n"}, message="Grow a\n\nWith a body.")
    commit({"a.py": None, "renamed.py": PY + "y = 3\n"}, message="Rename a")  # rename + edit
    commit({"b.bin.c": b"\x00\x02"})  # binary
    commit({"latin.py": "x = '\xe9'\n".encode("latin-1")})  # not UTF-8
    commit({"big.js": "a\n" * 600})  # over max_file_bytes
    commit({"keep.go": None, "new.ts": "let a = 1;\n"})  # a deleted and an added file
    # a merge commit: its changes are mined through the branch commit only
    git(repo, "checkout", "-q", "-b", "side")
    side = commit({"renamed.py": PY + "y = 4\n"}, message="On a side branch")
    git(repo, "checkout", "-q", "main")
    main = commit({"m.py": "m = 2\n"}, message="Back on main")
    git(repo, "merge", "-q", "--no-ff", "-m", "Merge side", "side")

    records, drops = mine(repo, max_file_bytes=1000)
    assert [(r["commit"], r["old_file"], r["new_file"]) for r in records] == [
        (main, "m.py", "m.py"),
        (side, "renamed.py", "renamed.py"),
        (records[2]["commit"], "a.py", "renamed.py"),
        (first, "a.py", "a.py"),
    ]
    assert drops == Counter({"binary": 1, "non_utf8": 1, "too_large": 1, "added_file": 1, "deleted_file": 1,
                             "not_source": 1})
    grow = records[-1]
    assert grow["subject"] == "Grow a" and grow["message"] == "Grow a\n\nWith a body."
    assert grow["lang"] == "Python" and grow["repos"] == "repo"
    assert grow["timestamp"] == 1704067320 and isinstance(grow["timestamp"], int)
    assert grow["old_contents"] == PY and grow["new_contents"] == PY + "y = 2\n"
    # deterministic, and the cap and revision range apply to non-merge commits
    assert mine(repo, max_file_bytes=1000)[0] == records
    assert len({r["commit"] for r in mine(repo, max_commits=2)[0]}) == 2
    assert [r["commit"] for r in mine(repo, rev=f"{first}..main", max_file_bytes=1000)[0]] == [
        r["commit"] for r in records[:-1]
    ]
    assert mine(repo, languages=["Go"])[0] == []


def test_git_source_errors_name_the_repository(tmp_path):
    with pytest.raises(NepError, match="not-there"):
        mine(tmp_path / "not-there")
    (tmp_path / "plain").mkdir()
    with pytest.raises(NepError, match="plain"):
        mine(tmp_path / "plain")


def commitpack(i: int, **changes) -> dict:
    r = {"commit": f"c{i}", "old_file": "f.py", "new_file": "f.py", "old_contents": "a\n", "new_contents": f"b{i}\n",
         "subject": "s", "message": "m", "lang": "Python", "repos": "org/r"}
    r.update(changes)
    return r


def test_jsonl_source_counts_bad_lines_and_reads_parquet(tmp_path):
    good = [commitpack(1), commitpack(2, old_contents="a\r\n", new_contents="b\r\nc\r\n", timestamp=7)]
    lines = [json.dumps(r) for r in good] + [
        "{oops",
        "[1, 2]",
        json.dumps(commitpack(3, new_contents=None)),
        json.dumps(commitpack(4, lang=5)),
        json.dumps(commitpack(5, new_contents="b\x00")),
        json.dumps(commitpack(6, lang="Rust")),
        json.dumps(commitpack(7, timestamp="yesterday")),
        json.dumps(commitpack(8, new_contents="a\n")),
    ]
    src = tmp_path / "a.jsonl"
    src.write_text("\n".join(lines) + "\n")
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist([commitpack(9)]), tmp_path / "b.parquet")
    drops: Counter = Counter()
    records = list(jsonl_records([str(src), str(tmp_path / "b.parquet")], languages=["Python"], drops=drops))
    assert [r["commit"] for r in records] == ["c1", "c2", "c9"]
    assert records[1]["old_contents"] == "a\n" and records[1]["timestamp"] == 7
    assert drops == Counter({"malformed_json": 1, "not_an_object": 1, "missing_new_contents": 1,
                             "bad_type_lang": 1, "nul_bytes": 1, "other_language": 1,
                             "bad_type_timestamp": 1, "unchanged": 1})


def test_jsonl_source_rejects_unusable_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    with pytest.raises(NepError, match="empty.jsonl"):
        list(jsonl_records([str(empty)], drops=Counter()))
    with pytest.raises(NepError, match="missing.jsonl"):
        list(jsonl_records([str(tmp_path / "missing.jsonl")], drops=Counter()))
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\xff\xfe{}\n")
    with pytest.raises(NepError, match="binary.jsonl"):
        list(jsonl_records([str(binary)], drops=Counter()))
    with pytest.raises(NepError, match="paths is empty"):
        list(jsonl_records([], drops=Counter()))


def test_hf_source_reads_a_local_commitpackft_layout(tmp_path):
    for config, lang in [("python", "Python"), ("c++", "C++")]:
        folder = tmp_path / "data" / config
        folder.mkdir(parents=True)
        rows = [commitpack(i, lang=lang, commit=f"{config}{i}") for i in range(3)] + [commitpack(9, lang=lang, new_contents=7)]
        (folder / "data.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    drops: Counter = Counter()
    records = list(hf_records(dataset=str(tmp_path), revision="unused", languages=["Python", "C++"],
                              max_records_per_language=2, drops=drops))
    assert [r["commit"] for r in records] == ["python0", "python1", "c++0", "c++1"]
    with pytest.raises(NepError, match="'go'"):
        list(hf_records(dataset=str(tmp_path), revision="x", languages=["Go"], drops=Counter()))


def test_tiktoken_works_offline_from_quicktok(tmp_path, monkeypatch):
    import tiktoken
    import tiktoken.load
    import tiktoken.registry

    from nep.data import tokens

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))

    def no_network(url):
        raise AssertionError(f"tried to download {url}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    monkeypatch.delitem(tiktoken.registry.ENCODINGS, "o200k_base", raising=False)
    tokens.get_encoding.cache_clear()
    path = tokens.ensure_bpe_file("o200k_base")
    url = "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken"
    assert path == tmp_path / hashlib.sha1(url.encode()).hexdigest()
    assert hashlib.sha256(path.read_bytes()).hexdigest().startswith("446a9538")
    enc = tiktoken.get_encoding("o200k_base")  # tiktoken's own hash check passes on our file
    assert enc.decode(enc.encode("def next_edit(): pass")) == "def next_edit(): pass"
    assert tokens.count_tokens("hello world") == 2
    # a file already there (e.g. downloaded by tiktoken itself) is left alone
    stamp = path.stat().st_mtime_ns
    tokens.ensure_bpe_file("o200k_base")
    assert path.stat().st_mtime_ns == stamp
    tokens.get_encoding.cache_clear()


def test_repository_name_is_the_same_in_every_clone(git_repo, tmp_path):
    from conftest import git

    from nep.data.sources.git import repository_name

    repo, commit = git_repo
    commit({"a.py": "x = 1\n"})
    assert repository_name(repo) == "repo"  # no origin: the directory name
    clone = tmp_path / "elsewhere"
    git(tmp_path, "clone", "-q", str(repo), str(clone))
    assert repository_name(clone) == "repo"  # a local origin: its last part
    for url, name in [("https://github.com/owner/proj.git", "owner/proj"), ("git@github.com:owner/proj.git", "owner/proj"),
                      ("https://gitlab.example.com/group/sub/proj/", "sub/proj"), ("file:///srv/git/proj.git", "proj")]:
        git(clone, "remote", "set-url", "origin", url)
        assert repository_name(clone) == name, url


# ------------------------------------------------------------- bad input: counted, or named errors


def test_lines_no_reader_can_hold_are_counted_drops(tmp_path):
    src = tmp_path / "bad.jsonl"
    lines = [
        b"\xef\xbb\xbf" + json.dumps(commitpack(1)).encode(),  # a BOM before the first record
        json.dumps(commitpack(2)).encode().replace(b'"s"', b'"\\ud800"'),  # a lone surrogate
        b"[" * 100_000 + b"]" * 100_000,  # 100,000 arrays deep
        json.dumps(commitpack(3)).encode()[:-1] + b', "timestamp": ' + b"9" * 5000 + b"}",  # 5,000 digits
        json.dumps(commitpack(4)).encode(),
    ]
    src.write_bytes(b"\n".join(lines) + b"\n")
    drops: Counter = Counter()
    records = list(jsonl_records([str(src)], drops=drops))
    assert [r["commit"] for r in records] == ["c1", "c4"]
    assert drops == Counter({"lone_surrogate": 1, "too_deeply_nested": 1, "number_too_large": 1})
    # the same through ingest's parallel index
    from nep.config.schema import Ingest
    from stages.ingest import run

    metrics = run(Ingest(source="jsonl", languages=["Python"], jsonl={"paths": [str(src)]}, workers=2),
                  output_dir=tmp_path / "ingest", metrics_path=tmp_path / "m.json", stamps=tmp_path / "stamps.json")
    assert metrics["records_out"] == 2
    assert metrics["dropped.lone_surrogate"] == metrics["dropped.too_deeply_nested"] == metrics["dropped.number_too_large"] == 1


def test_invalid_utf8_is_reported_at_its_line_and_offset(tmp_path):
    src = tmp_path / "latin.jsonl"
    good = json.dumps(commitpack(1)).encode() + b"\n"
    src.write_bytes(good + good.replace(b'"s"', b'"caf\xe9"'))
    offset = len(good) + good.index(b'"s"') + 4
    with pytest.raises(NepError, match=rf"latin.jsonl:2: .*0xe9 at file offset {offset}\b"):
        list(jsonl_records([str(src)], drops=Counter()))
    from nep.data.ingest import IndexWriter, index_files

    writer = IndexWriter(tmp_path, Counter())
    with pytest.raises(NepError, match=rf"latin.jsonl:2: .*0xe9 at file offset {offset}\b"):
        index_files([(str(src), str(src))], writer, languages=None, workers=1)
    writer.close(RuntimeError())


def test_git_subject_with_a_unit_separator(git_repo):
    repo, commit = git_repo
    commit({"a.py": PY})
    commit({"a.py": PY + "y = 1\n"}, message="Odd \x1f subject\n\nBody \x1f text")
    records, _ = mine(repo)
    assert records[0]["subject"] == "Odd \x1f subject"
    assert records[0]["message"] == "Odd \x1f subject\n\nBody \x1f text"


def test_a_subdirectory_mines_only_its_own_files(git_repo):
    repo, commit = git_repo
    commit({"sub/a.py": PY, "b.py": PY})
    commit({"sub/a.py": PY + "y = 1\n", "b.py": PY + "z = 1\n"})
    commit({"b.py": PY + "z = 2\n"})
    records, _ = mine(repo / "sub")
    assert [(r["new_file"], r["repos"]) for r in records] == [("sub/a.py", "repo/sub")]
    assert len(mine(repo)[0]) == 3


def test_a_killed_writer_leaves_no_temporary_file(tmp_path):
    import subprocess
    import sys

    script = ("import itertools, time\nfrom nep.util.jsonl import write_jsonl\n"
              "def slow():\n    for i in itertools.count():\n        yield {'i': i}\n        time.sleep(0.001)\n"
              f"write_jsonl({str(tmp_path / 'out.jsonl')!r}, slow())\n")
    proc = subprocess.Popen([sys.executable, "-c", script], cwd=Path(__file__).parents[2])
    import time

    time.sleep(1.5)
    proc.kill()
    proc.wait()
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------- ingest: no needless re-reads


def ingest(tmp_path: Path, source: str, **section) -> dict:
    from nep.config.schema import Ingest
    from stages.ingest import run

    cfg = Ingest(source=source, languages=["Python"], workers=1, **{source: section})
    return run(cfg, output_dir=tmp_path / "ingest", metrics_path=tmp_path / "metrics.json",
               stamps=tmp_path / "stamps.json")


def test_ingest_reads_an_unchanged_file_source_once(tmp_path, monkeypatch):
    import nep.data.ingest

    src = tmp_path / "a.jsonl"
    src.write_text("".join(json.dumps(commitpack(i)) + "\n" for i in range(3)))
    first = ingest(tmp_path, "jsonl", paths=[str(src)])
    assert first["records_out"] == 3
    index = (tmp_path / "ingest/index.jsonl").read_bytes()
    monkeypatch.setattr(nep.data.ingest, "index_block", lambda *a: pytest.fail("re-read"))
    assert ingest(tmp_path, "jsonl", paths=[str(src)]) == first
    assert (tmp_path / "ingest/index.jsonl").read_bytes() == index
    monkeypatch.undo()
    src.write_text(src.read_text() + json.dumps(commitpack(7)) + "\n")
    assert ingest(tmp_path, "jsonl", paths=[str(src)])["records_out"] == 4


def test_ingest_re_mines_git_only_when_its_commits_change(git_repo, tmp_path, monkeypatch):
    import nep.data.sources.git

    repo, commit = git_repo
    commit({"a.py": PY})
    commit({"a.py": PY + "y = 1\n"})
    first = ingest(tmp_path, "git", repos=[str(repo)], rev="HEAD", max_commits=0, max_file_bytes=10**6)
    mined = (tmp_path / "ingest/commits.jsonl").read_bytes()
    with monkeypatch.context() as m:
        m.setattr(nep.data.sources.git, "git_records", lambda *a, **k: pytest.fail("re-mined"))
        assert ingest(tmp_path, "git", repos=[str(repo)], rev="HEAD", max_commits=0, max_file_bytes=10**6) == first
    assert (tmp_path / "ingest/commits.jsonl").read_bytes() == mined
    commit({"a.py": PY + "y = 2\n"})
    assert ingest(tmp_path, "git", repos=[str(repo)], rev="HEAD", max_commits=0, max_file_bytes=10**6)["records_out"] == 2


def test_filter_never_reads_records_over_max_chars(tmp_path, monkeypatch):
    import nep.data.filter
    import nep.util.batches
    from nep.data.filter import paper_filter
    from stages.filter import run

    old = "".join(f"v{i} = {i}\n" for i in range(30))
    new = old.replace("v5 = 5\n", "v5 = 5\nw = 1\n").replace("v20 = 20\n", "v20 = 20\nw = 2\n")
    src = tmp_path / "a.jsonl"
    rows = [commitpack(1, old_contents=old, new_contents=new), commitpack(2, old_contents=old * 50, new_contents=new * 50),
            commitpack(3, old_contents=old, new_contents=new, new_file="g.py")]
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ingest(tmp_path, "jsonl", paths=[str(src)])
    read: list[int] = []
    real = nep.util.batches.read_ranges
    monkeypatch.setattr(nep.data.filter, "read_ranges", lambda path, ranges: read.extend(o for o, _ in ranges) or real(path, ranges))
    metrics = run(paper_filter(workers=1, max_chars=5000), input_path=tmp_path / "ingest",
                  output_path=tmp_path / "out.jsonl", metrics_path=tmp_path / "f.json")
    lines = src.read_bytes().splitlines(keepends=True)
    assert read == [0, len(lines[0]) + len(lines[1])]
    assert metrics["records_in"] == 3 and metrics["records_out"] == 2 and metrics["dropped.too_many_chars"] == 1
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert [r["commit"] for r in out] == ["c1", "c3"] and out[0]["new_contents"] == new


def test_a_nep_project_is_named_by_its_pyproject_whatever_its_clone_is_called(git_repo, tmp_path):
    """The committed offline default was mined in a clone named `main` with no origin; a user's
    clone of github.com/owner/nep would be `owner/nep`: every record, id and hash would differ. A
    nep project's own repository is named by pyproject.toml instead, the same in every clone."""
    from conftest import git

    from nep.data.sources.git import repository_name

    repo, commit = git_repo
    commit({"a.py": "x = 1\n"})
    assert repository_name(repo) == "repo"
    for name in ("dvc.yaml", "params.yaml"):
        (repo / name).write_text("{}\n")
    (repo / "pyproject.toml").write_text('[project]\nname = "nep"\n')
    assert repository_name(repo) == "nep"
    git(repo, "remote", "add", "origin", "https://github.com/someone/fork.git")
    assert repository_name(repo) == "nep"
    (repo / "pyproject.toml").write_text("not toml [")
    assert repository_name(repo) == "someone/fork"
