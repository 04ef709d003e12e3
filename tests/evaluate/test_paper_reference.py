"""nep's exact, partial and position match equal the paper's evaluation on the paper's protocol:
NEP-schema rows (files with and without a final newline, a duplicated record) as
`split.strategy: external`, generations imported through the `file` predictor keyed by commit and
file (as the paper's `evaluate/generate_api.py` writes them), scored by the evaluate stage's code and
by an independent reference written here from the paper's `evaluate/evaluate.py`. The same for its
`generate_offline.py` protocol (`evaluate.protocol: paper_offline`). `delta_chrf_8bf0582` equals a literal
transcription of Zed's definition at commit 8bf0582 on the same rows."""

from __future__ import annotations

import difflib
import json
from collections import Counter
from pathlib import Path

import pytest

from nep.config.schema import Split
from nep.data.split import split_dataset
from nep.evaluate.evaluation import score_predictor, summarize
from nep.predictors.base import Settings
from nep.predictors.runner import generate
from nep.util.jsonl import write_jsonl
from nep.util.paths import generations as _gen
from nep.util.paths import judgments as _judge

NEXT_MARKER = "<|next_version|>\n"


# ------------------------------------------------------------------ the reference (the paper's evaluate.py)
def ref_hunks(current: str, text: str) -> list[list[str]]:
    """difflib's unified diff of the two line lists (no line ends), cut at every `@@` line; a hunk
    whose +/- lines are all blank is left out."""
    diff = list(difflib.unified_diff(current.splitlines(), text.splitlines(), lineterm=""))
    starts = [i for i, line in enumerate(diff) if line.startswith("@@")]
    pieces = [diff[a:b] for a, b in zip(starts, [*starts[1:], len(diff)][: len(starts)], strict=True)]
    return [p for p in pieces if any(line[:1] in ("+", "-") and line[1:].strip() for line in p)]


def ref_scores(current: str, truth: str, output: str) -> tuple[int, int, int]:
    """(exact, partial, position) as 1/0, as the paper's loop records them."""
    true_hunks, pred_hunks = ref_hunks(current, truth), ref_hunks(current, output)
    partial = true_hunks[0] in pred_hunks  # the paper raises here when the truth has no hunk

    def contexts(hunks):
        return [[line for line in h if line.startswith(" ")] for h in hunks]

    position = contexts(true_hunks)[0] in contexts(pred_hunks)
    return int(truth == output), int(partial), int(position)


# ------------------------------------------------------------------ Zed's delta-chrF of 8bf0582, transcribed literally
def zed_reference(original: str, expected: str, actual: str) -> float:
    if original == expected == actual:
        return 1.0
    ws = set("\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a"
             "\u2028\u2029\u202f\u205f\u3000")

    def grams(text: str, n: int) -> dict[str, int]:
        chars = [c for c in text if c not in ws]
        return dict(Counter("".join(chars[i:i + n]) for i in range(len(chars) - n + 1)))

    def delta(after: dict, before: dict) -> dict[str, int]:
        out = {g: after.get(g, 0) - c for g, c in before.items()}
        out.update({g: c for g, c in after.items() if g not in before})
        return out

    def counts(d: dict[str, int]) -> dict[str, int]:
        return {(g if v > 0 else "¬" + g): abs(v) for g, v in d.items() if v}

    tp_p = tp_r = 0.0
    for n in range(1, 7):
        o, e, a = grams(original, n), grams(expected, n), grams(actual, n)
        de, da = delta(e, o), delta(a, o)
        if not de and not da:
            tp_p, tp_r = tp_p + 1, tp_r + 1
            continue
        ce, ca = counts(de), counts(da)
        tp = sum(min(v, ca.get(g, 0)) for g, v in ce.items())
        fp = sum(max(v - ce.get(g, 0), 0) for g, v in ca.items())
        fn = sum(max(v - ca.get(g, 0), 0) for g, v in ce.items())
        tp_p += tp / (tp + fp) if tp + fp else 0.0
        tp_r += tp / (tp + fn) if tp + fn else 0.0
    p, r = tp_p / 6, tp_r / 6
    return 0.0 if p + r == 0 else 5 * p * r / (4 * p + r)


# ------------------------------------------------------------------ NEP-schema rows and imported answers
def lines(n: int, tag: str) -> list[str]:
    return [f"{tag}_{i} = load({i})\n" for i in range(n)]


def paper_text(old: str, current: str, new: str, path: str) -> str:
    diff = "\n".join(difflib.unified_diff(old.splitlines(), current.splitlines(), lineterm="", fromfile=path,
                                          tofile=path))
    return (f"<|original_code|>\n{old}\n<|edits_diff|>\n{diff}\n<|current_version|>\n{current}\n"
            f"{NEXT_MARKER}{new}\n")


def row(k: int, eol: bool, at: tuple[int, int] = (4, 14)) -> dict:
    """An add-only commit of two chunks; the current version lacks the last one (the paper's cut)."""
    base = lines(24, f"v{k}")
    new_lines = list(base)
    new_lines.insert(at[1], f"use(v{k}_{at[1] - 1})\n")
    new_lines.insert(at[0], f"use(v{k}_{at[0] - 1})\n")
    cur_lines = list(base)
    cur_lines.insert(at[0], f"use(v{k}_{at[0] - 1})\n")
    cut = (lambda t: t) if eol else (lambda t: t.rstrip("\n"))
    old, new, current = cut("".join(base)), cut("".join(new_lines)), cut("".join(cur_lines))
    path = f"pkg/m{k}.py"
    return {"commit": f"{k:040x}", "message": "use the values", "old_file": path, "new_file": path, "status": "M",
            "old_contents": old, "new_contents": new, "current_contents": current,
            "text": paper_text(old, current, new, path)}


def answers(r: dict, k: int) -> list[str]:
    """Answers of every kind for row r (which one a row gets is picked by k)."""
    new, cur = r["new_contents"], r["current_contents"]
    target = new.splitlines(keepends=True)
    eol = new.endswith("\n")
    joined = "".join
    extra = list(target)
    extra.insert(1, "import os\n")  # the right edit plus one far from it
    wrong_value = [line.replace("use(", "print(") if line.startswith("use(") and i > 10 else line
                   for i, line in enumerate(target)]
    near = [line for line in target if not line.startswith(f"use(v{k}_13)")]  # the true line missing...
    near.insert(12, "use(nearby)\n")  # ...and a change two lines above it, in the same hunk
    options = [
        new,  # exact
        new + "\n" if not eol else new.rstrip("\n"),  # the final newline differs
        joined(extra),
        joined(wrong_value),  # the right place, a wrong line: position without partial
        joined(near),
        cur,  # no edit
        "The next edit uses the value.",  # not an attempt
        new + "\n\n",  # trailing blank lines only
    ]
    return options


@pytest.fixture
def rows_and_answers(tmp_path, monkeypatch):
    """(the test rows in order, their imported answers in the same order): 8 rows plus a duplicate."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEP_CACHE_DIR", str(tmp_path / "cache"))
    rows = [row(k, eol=k % 2 == 0) for k in range(8)]
    rows.insert(3, dict(rows[2]))  # an exact duplicate record: the paper scores both
    outputs = []
    for i, r in enumerate(rows):
        k = int(r["commit"], 16)
        outputs.append(answers(r, k)[(i * 3) % 8])
    train = [row(100 + k, eol=True) for k in range(4)]
    write_jsonl(tmp_path / "test.jsonl", rows)
    write_jsonl(tmp_path / "train.jsonl", train)
    split, metrics = split_dataset(Split(strategy="external", external_test="test.jsonl", external_train="train.jsonl"),
                                   examples_path=tmp_path / "unused.jsonl")
    assert metrics["external_test.duplicates_kept"] == 1 and len(split.test) == len(rows)
    write_jsonl(tmp_path / "data/split/test.jsonl", split.test)
    Path("data/judge").mkdir(parents=True, exist_ok=True)
    return rows, outputs


def import_and_score(name: str, rows: list[dict], outputs: list[str], protocol: str):
    """The generations as the paper's scripts write them (keyed here by commit + file), through the
    file predictor and the evaluate stage's scoring."""
    path = Path(f"{name}.jsonl")
    path.write_text("".join(json.dumps({"commit": r["commit"], "new_file": r["new_file"], "output": o}) + "\n"
                            for r, o in zip(rows, outputs, strict=True)))
    generate(name, {"kind": "file", "path": str(path), "needs": str(path)}, Settings.of(max_new_tokens=16),
             test_path="data/split/test.jsonl", progress=False)
    Path(f"data/judge/{name}.jsonl").write_text("")
    scores, counts = score_predictor(name, *predictor_files(name), context_lines=3, protocol=protocol)
    assert counts.get("dropped.missing_field", 0) == 0
    return scores


def test_next_version_protocol_equals_the_papers_functions_on_api_rows(rows_and_answers):
    rows, outputs = rows_and_answers
    scores = import_and_score("api", rows, outputs, "next_version")
    reference = [ref_scores(r["current_contents"], r["new_contents"], o) for r, o in zip(rows, outputs, strict=True)]
    ours = [(int(s.exact_match), int(s.partial_match), int(s.position_match)) for s in scores]
    assert ours == reference
    # the cases are not all alike: every metric both hits and misses
    for k in range(3):
        assert {t[k] for t in reference} == {0, 1}
    assert reference.count((0, 0, 1)) >= 1  # a right place with a wrong edit
    summary = summarize(scores)
    n = len(rows)
    for k, name in enumerate(("exact_match", "partial_match", "position_match")):
        assert summary[name] == sum(t[k] for t in reference) / n  # the paper's rate: over every row
    for r, o, s in zip(rows, outputs, scores, strict=True):
        assert s.delta_chrf_8bf0582 == pytest.approx(zed_reference(r["current_contents"], r["new_contents"], o), abs=1e-12)


def test_paper_offline_protocol_equals_the_papers_functions_on_offline_rows(rows_and_answers):
    """generate_offline.py's rows: the model's raw answer (here each answer plus the template newline
    a fine-tuned model writes) against the text after `<|next_version|>\\n`."""
    rows, outputs = rows_and_answers
    raw = [o + "\n" for o in outputs]
    scores = import_and_score("offline", rows, raw, "paper_offline")
    # the paper's own rows carry no commit or file: matched by their ground truth (the text tail)
    path = Path("offline_by_truth.jsonl")
    path.write_text("".join(json.dumps({"model_output": o, "ground_truth": r["text"].split(NEXT_MARKER)[1]}) + "\n"
                            for r, o in zip(rows, raw, strict=True)))
    generate("by_truth", {"kind": "file", "path": str(path), "needs": str(path)}, Settings.of(max_new_tokens=16),
             test_path="data/split/test.jsonl", progress=False)
    Path("data/judge/by_truth.jsonl").write_text("")
    by_truth, _ = score_predictor("by_truth", *predictor_files("by_truth"), context_lines=3, protocol="paper_offline")
    assert [s.exact_match for s in by_truth] == [s.exact_match for s in scores]
    assert json.loads(Path("metrics/generate/by_truth.json").read_text())["file.matched"] == len(rows)
    reference = [ref_scores(r["current_contents"], r["text"].split(NEXT_MARKER)[1], o)
                 for r, o in zip(rows, raw, strict=True)]
    assert [(int(s.exact_match), int(s.partial_match), int(s.position_match)) for s in scores] == reference
    assert {t[0] for t in reference} == {0, 1}


def test_the_old_ground_truth_differs_from_the_papers_api_scoring(rows_and_answers):
    """What nep computed before: the text tail (new_contents + newline) as the ground truth of API
    rows, never an exact match and, where the file ends with a newline, a blank line joining the last
    hunk. The reference on the same rows shows the difference."""
    rows, outputs = rows_and_answers
    api = [ref_scores(r["current_contents"], r["new_contents"], o) for r, o in zip(rows, outputs, strict=True)]
    old = [ref_scores(r["current_contents"], r["text"].split(NEXT_MARKER)[1], o) for r, o in zip(rows, outputs, strict=True)]
    assert sum(t[0] for t in api) > 0 and sum(t[0] for t in old) == 0


def predictor_files(name: str):
    """The pipeline's generations and judgments files of predictor `name` (relative to the cwd)."""
    return _gen(name), _judge(name)
