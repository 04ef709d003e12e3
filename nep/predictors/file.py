"""The `file` predictor: generations made elsewhere (the paper's scripts, an inference server's
log, a colleague's run), read from a JSONL file and matched to the test set.

    generate.predictors.theirs: {kind: file, path: runs/theirs.jsonl, needs: runs/theirs.jsonl}

A row carries its prediction in `output` (or `model_output`). It is matched to a test example by
the first of these keys that the row has and that finds an example, never by its position:

1. `id` equal to the example's `id`;
2. `commit` plus a file name (`new_file`, `old_file` or `path`) equal to the example's `commit`
   plus its `new_file`, `path` or `old_file`;
3. `ground_truth` equal to the example's next version (or to it as the template writes it, with
   its newline: the paper's `generate_offline.py` rows), when exactly one example has it.

A key that finds several examples is narrowed by the later keys; still several → the row is
`ambiguous`, unless those examples are identical (same prompt and next version: the benchmark
keeps exact duplicates), which are then filled in turn. A row that finds none is `unmatched`; a
second row for an already matched example is a `duplicate` (the first one counts). Rows without
a string output, or not JSON, are `bad_rows.<why>`. Test examples no row matched are failures
under the entry's `max_failure_rate` (default 0) like any predictor's: above it the run stops in
one line saying how many examples no row matched and why (rows unmatched, ambiguous, duplicated
or bad, first few of each by id or line) and writes nothing; within it they get an empty,
unextracted record with reason `missing` (every metric scores them as misses). The output is
the next version as is, unless it holds training markers or `<next_version>` tags, which are
then extracted as a model's output would be (`style: auto`). `style` forces one reading for every
row: `direct` (the file as is), `completion` (the raw output of a model trained on the template:
its template newline removed), `chat` (tags or a fence required). A row marked `extracted: false`
(nep's own generation records and `python -m benchmarks.run_examples` exports carry it: an answer that held
no next version, say an edit block whose original lines are not in the current version) is scored
as such, a miss with the row's `extraction` as its reason (`unextracted` if it has none), never as
an empty next version; its `raw_output`, if any, is kept. A row's string `stop` (why its answer
ended, as nep's records say it) is kept as the answer's stop tag, so `ended` counts it as the
original run did. A row's optional `latency_s`
(seconds, measured where it was generated) goes to the timing report, its optional `logprob` (the
answer's confidence, a mean token log-probability) into the record.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Literal

from nep.core.extract import OPEN_TAG, Style
from nep.core.formats import PAPER
from nep.core.prompts import MARKERS
from nep.predictors.base import LOGPROB_DIGITS, Prediction, Predictor
from nep.util.errors import NepError
from nep.util.jsonl import flat_counts, iter_lines, parse_object

FILE_KEYS = ("new_file", "path", "old_file")
REASON = re.compile(r"[a-z][a-z0-9_]{0,63}")  # an extraction reason's name, as records write them
SHOWN = 3  # rows (or examples) named per reason in the error of a file that matches too little
# why a row matched nothing, as the error says it (the keys of FilePredictor.counts)
WHY = {
    "unmatched": "match no test example by id, commit + file or ground truth",
    "ambiguous": "match several different examples",
    "duplicate": "repeat an example already matched",
    "bad_rows.no_output": "have no string `output` (or `model_output`)",
    "bad_rows.malformed_json": "are not JSON",
    "bad_rows.not_an_object": "are not JSON objects",
}


def output_style(text: str) -> Style:
    if any(m in text for m in MARKERS):
        return "completion"
    if OPEN_TAG in text:
        return "chat"
    return "direct"


def unextracted_reason(row: dict[str, Any]) -> str:
    """Why a row marked `extracted: false` has no next version: its `extraction` when that is a
    reason's name (lowercase words joined by underscores), else `unextracted`."""
    reason = row.get("extraction")
    if isinstance(reason, str) and REASON.fullmatch(reason):
        return reason
    return "unextracted"


@dataclass
class Matcher:
    """Indexes of the test set by each matching key."""

    examples: Sequence[dict[str, Any]]
    by_id: dict[str, list[int]] = field(default_factory=dict)
    by_file: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    by_truth: dict[str, list[int]] = field(default_factory=dict)

    def __post_init__(self):
        for i, ex in enumerate(self.examples):
            self.by_id.setdefault(str(ex["id"]), []).append(i)
            commit = ex.get("commit")
            if isinstance(commit, str) and commit:
                for name in {ex.get(k) for k in FILE_KEYS}:
                    if isinstance(name, str) and name:
                        self.by_file.setdefault((commit, name), []).append(i)
            # the real next version, or the template's (what generate_offline.py rows carry)
            for truth in {ex["next"], ex.get("completion") or ex["next"]}:
                self.by_truth.setdefault(truth, []).append(i)

    def keys(self, row: dict[str, Any]) -> list[tuple[str, list[int]]]:
        """(rule, examples it finds) for each key the row has, in rule order."""
        found = []
        if row.get("id") is not None:
            found.append(("id", self.by_id.get(str(row["id"]), [])))
        commit = row.get("commit")
        names = [row[k] for k in ("new_file", "old_file", "path") if isinstance(row.get(k), str) and row[k]]
        if isinstance(commit, str) and commit and names:
            hits = {i for name in names for i in self.by_file.get((commit, name), [])}
            found.append(("commit_file", sorted(hits)))
        if isinstance(row.get("ground_truth"), str):
            found.append(("ground_truth", self.by_truth.get(row["ground_truth"], [])))
        return found

    def candidates(self, row: dict[str, Any]) -> tuple[str | None, list[int]]:
        """(the rule that decided, the examples the row may belong to)."""
        rule, chosen = None, None
        for name, hits in self.keys(row):
            if not hits:
                continue
            if chosen is None:
                rule, chosen = name, hits
            else:
                narrowed = [i for i in chosen if i in hits]
                if narrowed:
                    chosen = narrowed
            if len(chosen) == 1:
                break
        return rule, chosen or []

    def interchangeable(self, indices: list[int]) -> bool:
        first = self.examples[indices[0]]
        return all((self.examples[i]["prompt"], self.examples[i]["next"]) == (first["prompt"], first["next"])
                   for i in indices)


@dataclass
class FilePredictor(Predictor):
    """`path`: a JSONL file of generations (see the module docstring for how rows are matched)."""

    kind: ClassVar[str] = "file"
    required: ClassVar[tuple[str, ...]] = ("path",)
    path: str = ""
    style: Literal["auto", "direct", "completion", "chat"] = "auto"

    def __post_init__(self):
        self.counts: dict[str, int] = {}
        self.examples_of: dict[str, list[str]] = {}  # reason → the first few rows it holds ("id 'x'", "line 3")

    def reads_as(self, settings):
        return PAPER  # imported outputs are next versions, whatever format.answer says

    def match(self, examples: Sequence[dict[str, Any]]) -> dict[int, dict[str, Any]]:
        """Test-set index → its row; counts every row's fate in `self.counts`."""
        if not Path(self.path).is_file():
            raise NepError(f"{self.param('path')}: {self.path}: file not found")
        matcher = Matcher(examples)
        bad: Counter = Counter()
        counts: Counter = Counter()
        assigned: dict[int, dict[str, Any]] = {}
        self.examples_of = {}

        def note(reason: str, lineno: int, row: Any = None) -> None:
            shown = self.examples_of.setdefault(reason, [])
            if len(shown) < SHOWN:
                has_id = isinstance(row, dict) and isinstance(row.get("id"), (str, int)) and row["id"] != ""
                shown.append(f"line {lineno} (id {row['id']!r})" if has_id else f"line {lineno}")

        try:
            for lineno, offset, line in iter_lines(self.path):
                counts["rows"] += 1
                row, reason = parse_object(Path(self.path), lineno, offset, line)
                if reason:
                    bad[reason] += 1
                    note(f"bad_rows.{reason}", lineno)
                    continue
                output = row.get("output", row.get("model_output"))
                if not isinstance(output, str):
                    bad["no_output"] += 1
                    note("bad_rows.no_output", lineno, row)
                    continue
                rule, candidates = matcher.candidates(row)
                if not candidates:
                    counts["unmatched"] += 1
                    note("unmatched", lineno, row)
                    continue
                if len(candidates) > 1 and not matcher.interchangeable(candidates):
                    counts["ambiguous"] += 1
                    note("ambiguous", lineno, row)
                    continue
                free = [i for i in candidates if i not in assigned]
                if not free:
                    counts["duplicate"] += 1
                    note("duplicate", lineno, row)
                    continue
                assigned[free[0]] = {**row, "output": output}
                counts["matched"] += 1
                counts[f"matched_by.{rule}"] += 1
        except (NepError, UnicodeDecodeError) as e:
            raise NepError(f"{self.param('path')}: {e}") from e
        self.counts = {
            "rows": counts["rows"],  # every non-blank line
            **{k: counts[k] for k in ("matched", "unmatched", "ambiguous", "duplicate")},
            "missing": len(examples) - len(assigned),
            **{k: v for k, v in counts.items() if k.startswith("matched_by.")},
            **flat_counts("bad_rows", bad),
        }
        return assigned

    def check_missing(self, examples: Sequence[dict[str, Any]], assigned: dict[int, dict[str, Any]]) -> None:
        """TooManyFailedGenerations when more of the test set than `max_failure_rate` has no row:
        how many, why (each reason's count and first rows) and the first examples left without one."""
        from nep.predictors.runner import TooManyFailedGenerations

        missing = [str(ex["id"]) for i, ex in enumerate(examples) if i not in assigned]
        if not missing or len(missing) / len(examples) <= self.max_failure_rate:
            return
        rows = self.counts["rows"]
        order = [k for k in ("unmatched", "ambiguous", "duplicate") if k in self.examples_of]
        order += sorted(k for k in self.examples_of if k.startswith("bad_rows."))
        reasons = [f"{self.counts[k]} {WHY.get(k, 'are bad lines (' + k.removeprefix('bad_rows.') + ')')} "
                   f"({', '.join(self.examples_of[k])})" for k in order]
        why = (f"of its {rows} rows, " + "; ".join(reasons)) if reasons else (
            "the file has no rows" if not rows else f"its {rows} rows all matched: it covers part of the test set")
        first = ", ".join(missing[:SHOWN]) + (", ..." if len(missing) > SHOWN else "")
        raise TooManyFailedGenerations(
            f"{len(missing)} of {len(examples)} test examples have no row in {self.path} (first: {first}): {why}; "
            f"more than max_failure_rate={self.max_failure_rate}, nothing written",
            param=self.param("max_failure_rate"),
            hint=f"check that {self.param('path')} holds generations for this test set (data/split/test.jsonl), "
                 "or raise max_failure_rate to score the missing ones as misses",
        )

    def predict(self, examples, todo, settings):
        assigned = self.match(examples)
        self.check_missing(examples, assigned)
        group = []
        for i in todo:
            row = assigned.get(i)
            if row is None:
                group.append((i, Prediction("", skipped="missing")))
            else:
                tokens = row.get("output_tokens")
                tokens = tokens if isinstance(tokens, int) and not isinstance(tokens, bool) else 0
                style = output_style(row["output"]) if self.style == "auto" else self.style
                latency = row.get("latency_s")  # measured where it was generated, if the row says
                latency = float(latency) if isinstance(latency, (int, float)) and not isinstance(latency, bool) else 0.0
                logprob = row.get("logprob")  # a confidence computed where it was generated
                logprob = (round(float(logprob), LOGPROB_DIGITS)
                           if isinstance(logprob, (int, float)) and not isinstance(logprob, bool) and math.isfinite(logprob)
                           else None)
                stop = row.get("stop")
                tags = {"stop": stop} if isinstance(stop, str) and stop else {}
                unread = row.get("extracted") is False  # its producer read no next version in this answer
                raw = row.get("raw_output") if unread and isinstance(row.get("raw_output"), str) else row["output"]
                group.append((i, Prediction(raw, tokens, style=style, latency_s=max(latency, 0.0), logprob=logprob,
                                            tags=tags, unextracted=unextracted_reason(row) if unread else None)))
        yield group

    def runs_on(self, settings):
        return {"device": "elsewhere", "machine": f"where {self.path} was generated (its rows' latency_s)",
                "batch_size": None}

    def report(self):
        return {f"file.{k}": int(v) for k, v in sorted(self.counts.items())}
