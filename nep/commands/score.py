"""`nep score`: score predictions files against a test set, without the pipeline.

    nep score --test T --predictions P [P ...] [--reference NAME] [--output DIR]   (or python -m nep score)

The test set `T` is the published NEP schema (a JSONL/Parquet file, a local directory holding
data/test.jsonl, or a hub id such as lurf21/NextEditPrediction, read through `datasets`) or nep's
own examples (data/split/test.jsonl), read as `split.strategy: external` reads it
(nep.data.nep_dataset). Each predictions file is one predictor, named by its file's stem; its rows
are matched to the test examples as the `file` predictor matches them (nep.predictors.file: by
`id`, else commit + file name, else ground truth; its counts are printed), turned into generation
records as the generate stage writes them, judged (the offline `rules` judge unless `--judge
openai`), and scored by the evaluate stage's own function (nep.evaluate.evaluation.evaluate): the
same metrics, 95% bootstrap intervals and paired tests against the reference predictor (`--reference`,
default the first file). It prints the 80-column table of `nep compare` and, with `--output DIR`,
writes what the pipeline writes, under DIR:

    DIR/evaluate.json            the headline (the keys of metrics/evaluate.json, per file stem)
    DIR/evaluate/details.json    every other metric and count; predictors.json, languages.json,
                                 coverage.json, risk_coverage.json (as metrics/evaluate/)
    DIR/examples.html            the per-example page (nep.evaluate.examples_page)
    DIR/generate/<stem>.jsonl    the generation records; DIR/judge/<stem>.jsonl their judgments
    DIR/score.json               what was scored: test set, files, their match counts, judge
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nep.util.errors import NepError
from nep.util.jsonl import iter_lines, parse_object, write_jsonl, write_metrics

OUTPUT_FIELDS = ("output", "model_output")
MATCH_FIELDS = "id, commit + new_file/old_file/path, or ground_truth"
# What nep.data.nep_dataset's drop reasons mean, for the one-line error on a bad test row.
PROBLEMS = {"missing": "missing", "bad_type": "not text", "empty": "empty"}
PROCESSED_FIELDS = ("id", "prompt", "next")


@dataclass
class TestSet:
    """The examples of a test set (generation-ready: `id`, `prompt`, `next`...), its format and counts."""

    source: str
    examples: list[dict[str, Any]]
    format: str
    stats: dict[str, int] = field(default_factory=dict)


@dataclass
class Scored:
    """What `score` computed: the evaluation, each predictor's files and match counts, the settings."""

    evaluation: Any  # nep.evaluate.evaluation.Evaluation
    test: TestSet
    files: dict[str, Path]  # predictor name (file stem) -> predictions file
    counts: dict[str, dict[str, int]]  # predictor -> the file predictor's counts
    reference: str
    judge: str
    protocol: str
    generations: dict[str, Path]
    judgments: dict[str, Path]


# ---------------------------------------------------------------- reading and checking


def _row_problem(row: dict[str, Any], fmt: str) -> str | None:
    """`field F: missing` (or `not text`, `empty`) for a test row the scorer cannot use, else None."""
    if fmt == "nep":
        from nep.data.nep_dataset import _invalid

        reason = _invalid(row)
        if reason is None:
            return None
        for prefix, what in PROBLEMS.items():
            if reason.startswith(prefix + "_"):
                return f"field {reason[len(prefix) + 1:]}: {what}"
        return reason
    for name in PROCESSED_FIELDS:
        if name not in row:
            return f"field {name}: missing"
        if not isinstance(row[name], str):
            return f"field {name}: not text"
    return None


def load_test(source: str, *, revision: str = "main") -> TestSet:
    """The test examples of `source` (see the module docstring). A row the scorer cannot use is one
    line naming the source, the row and the field."""
    from nep.data.nep_dataset import is_nep_record, load_external, load_rows, nep_examples

    def our_names(e: NepError) -> NepError:  # the loader names split's params; here they are options
        text = str(e).replace("split.external_test", "--test").replace("split.external_revision", "--revision")
        return NepError(text)

    drops: Counter = Counter()
    try:
        rows = load_rows(source, split="test", revision=revision, param="external_test", drops=drops)
    except NepError as e:
        raise our_names(e) from None
    if drops:
        raise NepError(f"{source}: {sum(drops.values())} line(s) are not JSON objects ({dict(drops)}); "
                       "every row must be one JSON object")
    if not rows:
        raise NepError(f"{source}: no rows")
    fmt = "nep" if is_nep_record(rows[0]) else "processed"
    for n, row in enumerate(rows, 1):
        if problem := _row_problem(row, fmt):
            kind = "an NEP-schema row" if fmt == "nep" else "an example"
            raise NepError(f"{source}: row {n}: {problem} ({kind}, as row 1 is)")
    if fmt == "nep":
        stats: Counter = Counter()
        examples = list(nep_examples(rows, Counter(), stats))
        return TestSet(source, examples, fmt, dict(stats))
    try:  # nep's examples: exactly what split's external loader keeps
        ext = load_external(source, split="test", revision=revision, param="external_test")
    except NepError as e:
        raise our_names(e) from None
    ids = Counter(ex["id"] for ex in ext.examples)
    if duplicated := [i for i, k in ids.items() if k > 1]:
        raise NepError(f"{source}: duplicate example id {duplicated[0]!r}")
    return TestSet(source, ext.examples, ext.format)


def check_predictions(path: Path) -> None:
    """Every row of a predictions file is a JSON object with its output as text and a key to match
    it by; else one line naming the file, the row (its line) and the field."""
    if not path.is_file():
        raise NepError(f"{path}: file not found")
    rows = 0
    for lineno, offset, line in iter_lines(path):
        obj, reason = parse_object(path, lineno, offset, line)
        if reason:
            what = "not a JSON object" if reason == "not_an_object" else f"not JSON ({reason})"
            raise NepError(f"{path}: row {lineno}: {what}")
        rows += 1
        present = [k for k in OUTPUT_FIELDS if k in obj]
        if not present:
            raise NepError(f"{path}: row {lineno}: field output: missing (each row needs `output` or `model_output`)")
        if not isinstance(obj[present[0]], str):
            raise NepError(f"{path}: row {lineno}: field {present[0]}: not text ({type(obj[present[0]]).__name__})")
        has_file = isinstance(obj.get("commit"), str) and any(isinstance(obj.get(k), str) for k in
                                                               ("new_file", "old_file", "path"))
        if obj.get("id") is None and not has_file and not isinstance(obj.get("ground_truth"), str):
            raise NepError(f"{path}: row {lineno}: no field to match it to a test example ({MATCH_FIELDS})")
    if not rows:
        raise NepError(f"{path}: no rows")


def predictor_names(files: list[Path]) -> dict[str, Path]:
    """Each predictions file's predictor name: its stem (an error when two files share one)."""
    names: dict[str, Path] = {}
    for path in files:
        name = path.name[: -len(".jsonl")] if path.name.endswith(".jsonl") else path.stem
        if name in names:
            raise NepError(f"{path}: its name {name!r} is taken by {names[name]} (predictors are named by file stem; "
                           "rename one)")
        names[name] = path
    return names


# ---------------------------------------------------------------- scoring


def generation_records(name: str, path: Path, examples: list[dict[str, Any]], style: str = "auto",
                       max_missing: float = 0.0) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The generation records the generate stage writes for a `file` predictor on `examples` (one
    per example, in test-set order), and the predictor's counts. More test examples without a row
    than `max_missing` (a share: the entry's max_failure_rate) is one line saying why."""
    from nep.predictors.base import Settings
    from nep.predictors.kinds import build_predictor
    from nep.predictors.runner import TooManyFailedGenerations, answer_entry, make_record

    entry = {"kind": "file", "path": str(path), "style": style, "max_failure_rate": max_missing}
    predictor = build_predictor(name, entry)
    settings = Settings.of()  # the generate and answer-format defaults (a file predictor reads neither)
    answers: dict[int, dict[str, Any]] = {}
    try:
        for group in predictor.predict(examples, range(len(examples)), settings):
            for i, prediction in group:
                answers[i] = answer_entry(i, examples[i], prediction, predictor.style)
    except TooManyFailedGenerations as e:  # named in the options of this command, not params.yaml's
        text = e.message.replace(f"max_failure_rate={max_missing}", f"--max-missing {max_missing}")
        raise NepError(text, hint="check that it holds predictions for this test set, or pass --max-missing "
                                  "with the share of examples to score as misses (e.g. 0.1)") from None
    fmt = predictor.reads_as(settings)  # as the runner reads its answers
    records = [make_record(ex, answers[i], fmt) for i, ex in enumerate(examples)]
    return records, dict(predictor.counts)


def score(test: TestSet, files: list[Path], *, work: Path, reference: str = "", judge: str = "rules",
          protocol: str | None = None, bootstrap_samples: int | None = None, seed: int | None = None,
          style: str = "auto", max_missing: float = 0.0) -> Scored:
    """Score each predictions file of `files` on `test` with the evaluate stage's code; the
    generation records and judgments are written under `work` (generate/, judge/). Settings left
    None take the evaluate params' defaults (nep/config/schema.py)."""
    from nep.config.schema import Evaluate, Judge
    from nep.evaluate.evaluation import evaluate
    from nep.evaluate.judges import judge_file

    names = predictor_names(files)
    if reference:
        by_path = {str(p): n for n, p in names.items()}
        reference = by_path.get(reference, reference)
        if reference not in names:
            raise NepError(f"--reference {reference!r}: not one of the predictions files' names ({', '.join(names)})")
    for path in names.values():
        check_predictions(path)
    defaults = Evaluate()
    protocol = protocol or defaults.protocol
    samples = bootstrap_samples or defaults.bootstrap_samples
    seed = defaults.seed if seed is None else seed
    judge_cfg = Judge(backend=judge)
    counts, generations, judgments = {}, {}, {}
    for name, path in names.items():
        records, counts[name] = generation_records(name, path, test.examples, style, max_missing)
        generations[name] = work / "generate" / f"{name}.jsonl"
        judgments[name] = work / "judge" / f"{name}.jsonl"
        write_jsonl(generations[name], records)
        report = judge_file(generations[name], judgments[name], judge_cfg, desc=f"judge {name}")
        report.check()
    ev = evaluate({n: (generations[n], judgments[n]) for n in names}, reference=reference,
                  context_lines=defaults.context_lines, bootstrap_samples=samples, seed=seed, protocol=protocol)
    return Scored(ev, test, names, counts, reference or next(iter(names)), judge, protocol, generations, judgments)


# ---------------------------------------------------------------- showing and writing


def counts_line(name: str, path: Path, counts: dict[str, int], n: int) -> str:
    """`theirs.jsonl: 210 rows, 208 matched (id 208), 2 unmatched; 2 of 210 test examples missing`."""
    by = ", ".join(f"{k.split('.', 1)[1]} {v}" for k, v in sorted(counts.items()) if k.startswith("matched_by."))
    parts = [f"{counts.get('rows', 0)} rows", f"{counts.get('matched', 0)} matched" + (f" ({by})" if by else "")]
    parts += [f"{counts[k]} {k}" for k in ("unmatched", "ambiguous", "duplicate") if counts.get(k)]
    bad = sum(v for k, v in counts.items() if k.startswith("bad_rows."))
    if bad:
        parts.append(f"{bad} bad")
    return f"{name} ({path}): {', '.join(parts)}; {counts.get('missing', 0)} of {n} test examples missing"


def table(scored: Scored, width: int = 80) -> str:
    """The headline as `nep compare` prints it: one column per predictions file, percent with the
    95% interval, `*` where the paired test against the reference gives p < 0.05."""
    from nep.commands.compare import Experiment, render_text

    label = "test set"
    experiments = []
    for name in scored.files:
        prefix = f"{name}."
        values: dict[str, Any] = {f"{label}.{k[len(prefix):]}": v for k, v in scored.evaluation.headline.items()
                                  if k.startswith(prefix)}
        values["judge.backend"] = scored.judge
        experiments.append(Experiment(name + (" (ref)" if name == scored.reference else ""), values))
    return render_text(experiments, width)


def write_outputs(scored: Scored, out: Path) -> list[Path]:
    """The pipeline's evaluate files, the per-example page and score.json under `out`; returns them."""
    from nep.evaluate.examples_page import write_page

    ev = scored.evaluation
    written = {
        out / "evaluate.json": ev.headline,
        out / "evaluate" / "details.json": ev.details,
        out / "evaluate" / "predictors.json": {"rows": ev.predictor_rows},
        out / "evaluate" / "languages.json": {"rows": ev.language_rows},
        out / "evaluate" / "coverage.json": {"rows": ev.coverage_rows},
        out / "evaluate" / "risk_coverage.json": {"rows": ev.risk_rows},
        out / "score.json": {
            "test": scored.test.source, "test_format": scored.test.format, "examples": len(scored.test.examples),
            "judge": scored.judge, "protocol": scored.protocol, "reference": scored.reference,
            "predictions": {n: str(p) for n, p in scored.files.items()},
            **{f"{n}.file.{k}": v for n, c in scored.counts.items() for k, v in sorted(c.items())},
        },
    }
    for path, data in written.items():
        write_metrics(path, data)
    page = out / "examples.html"
    write_page(page, ev, scored.generations, protocol=scored.protocol,
               title=f"nep score: {', '.join(scored.files)} on {scored.test.source}")
    return [*written, page]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="nep score", description="Score predictions files against a test set, without the pipeline "
        "(the evaluate stage's metrics, 95% intervals and paired tests).")
    parser.add_argument("--test", required=True, metavar="T",
                        help="the test set: an NEP-schema or nep examples JSONL/Parquet file, a directory holding "
                             "data/test.jsonl, or a hub id (lurf21/NextEditPrediction)")
    parser.add_argument("--predictions", required=True, nargs="+", type=Path, metavar="P",
                        help="predictions JSONL files, one per predictor (named by file stem); rows carry `output` "
                             f"and a key: {MATCH_FIELDS}")
    parser.add_argument("--reference", default="", metavar="NAME",
                        help="the predictor the others are tested against (a file's stem or path; default: the first)")
    parser.add_argument("--output", type=Path, metavar="DIR",
                        help="write DIR/evaluate.json, DIR/evaluate/*.json, DIR/examples.html, the records")
    parser.add_argument("--judge", choices=("rules", "openai"), default="rules",
                        help="rules (default: offline, exact / whitespace / syntax tree) or openai (an LLM; "
                             "the judge params' defaults, OPENAI_API_KEY)")
    parser.add_argument("--protocol", choices=("next_version", "paper_offline"), default=None,
                        help="what is scored against what (default next_version; docs/metrics.md)")
    parser.add_argument("--style", choices=("auto", "direct", "completion", "chat"), default="auto",
                        help="how outputs are read (the file predictor's `style`; default auto)")
    parser.add_argument("--max-missing", type=float, default=0.0, metavar="SHARE",
                        help="the share of test examples a file may lack (scored as misses; default 0: every "
                             "example needs a row, as the file predictor's max_failure_rate)")
    parser.add_argument("--revision", default="main", help="the hub dataset's revision (with a hub id)")
    parser.add_argument("--bootstrap-samples", type=int, default=None, metavar="N", help="resamples (default 10000)")
    parser.add_argument("--seed", type=int, default=None, help="seed of the resamples (default 0)")
    parser.add_argument("--width", type=int, default=80, help="columns of the table (default 80)")
    args = parser.parse_args(argv)
    if args.bootstrap_samples is not None and args.bootstrap_samples < 1:
        parser.error("--bootstrap-samples must be at least 1")
    if not 0 <= args.max_missing <= 1:
        parser.error("--max-missing is a share of the test set, from 0 to 1")
    test = load_test(args.test, revision=args.revision)
    print(f"test: {args.test}: {len(test.examples)} examples ({test.format} format)", file=sys.stderr)
    with tempfile.TemporaryDirectory(prefix="nep-score-") as tmp:
        work = args.output or Path(tmp)
        scored = score(test, args.predictions, work=work, reference=args.reference, judge=args.judge,
                       protocol=args.protocol, bootstrap_samples=args.bootstrap_samples, seed=args.seed,
                       style=args.style, max_missing=args.max_missing)
        for name, path in scored.files.items():
            print(counts_line(name, path, scored.counts[name], len(test.examples)), file=sys.stderr)
        if args.output:
            written = write_outputs(scored, args.output)
            print(f"wrote {', '.join(str(p) for p in written)}", file=sys.stderr)
    judge = "offline rules judge (exact / whitespace / syntax tree)" if args.judge == "rules" else "LLM judge"
    print(f"nep score: {len(test.examples)} examples of {args.test}; judge: {judge}; reference: {scored.reference}")
    print(table(scored, args.width), end="")
    return 0
