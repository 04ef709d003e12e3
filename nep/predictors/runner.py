"""Run one predictor over the test set, resumably: the library behind `stages/generate.py`.

The predictor gets the whole test set and streams answers back in groups (nep.predictors.base); each
group is appended to a checkpoint as it arrives, so a run killed at any point (even `kill -9`)
loses at most the group in flight, and a rerun predicts only what is missing. The checkpoint
lives outside the stage's outputs (which `dvc repro` deletes before running a stage), under
`$NEP_CACHE_DIR/generate/` (default `.cache/nep/generate/`), keyed by what can change an answer
(`checkpoint_key`): the predictor's entry, any local file or directory it names (content or sizes
and times), `max_new_tokens`, `max_growth_tokens`, the test set's bytes, the code generation runs
(CODE, the code dvc.yaml declares for the stage), and for predictors whose answers depend on the
batch (`batch_dependent`: transformers' padded batches on CPU threads) `batch_size`, `threads` and
`prompt_lookup_tokens` (when set):
change any of them and the run starts afresh. When every example is answered, the records are
written at once, in test-set order, and the checkpoint is removed (kept while tolerated failures
remain, below).

Failed answers are never final. A prediction with an `error` (an endpoint that failed after its
retries) is not saved in the checkpoint, so the next run asks again. When more of the test set
failed than the predictor's `max_failure_rate` (default 0) allows, the run stops with one line
naming the param and the causes (TooManyFailedGenerations) and writes no record or metric: a
rerun once the endpoint is healthy asks only the failures and writes the same bytes as an
uninterrupted run. Tolerated failures are written as unextracted records (`extraction:
backend_error.<reason>`) and counted once in the metrics (`failed`); the checkpoint keeps the
answers, and the stage lists the failures in its retry file (nep.predictors.retry), which makes
the next plain `dvc repro` ask them again.

Records and `metrics/generate/<p>.json` hold only values that the same inputs reproduce (an
answer's confidence, `logprob`, is rounded for that); measured times go to
`metrics/timing/generate/<p>.json` (wall time, latency p50/p95, time to first token, tokens per
second, batch size, device, machine: nep.predictors.latency) and, one line per answer, to
`metrics/timing/generate/<p>.answers.jsonl`; neither is a DVC output.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from tqdm import tqdm

from nep.core.formats import PAPER, AnswerFormat
from nep.core.prompts import template_completion
from nep.predictors import latency
from nep.predictors.base import Prediction, Settings, current_version
from nep.predictors.kinds import build_predictor, own_format
from nep.predictors.stop import CUT, INCOMPLETE
from nep.util import paths
from nep.util.console import bars
from nep.util.errors import NepError
from nep.util.jsonl import flat_counts, read_jsonl, write_jsonl, write_metrics

log = logging.getLogger(__name__)

REQUIRED_FIELDS = ("id", "prompt", "next")
# Fields of a test example copied into its record when present (for joins and re-imports).
CARRIED_FIELDS = ("commit", "path", "new_file", "old_file")
SMALL_FILE = 64 << 20  # files up to this size are fingerprinted by content, larger ones by size and time
# Entry keys that cannot change an answer: a killed run resumes after they are changed.
# Examples done (a batch in flight counts its finished rows and its share of decoding steps), ETA.
PROGRESS_FORMAT = "{desc}: {percentage:3.0f}%|{bar:20}| {n:.0f}/{total_fmt} examples [{elapsed}<{remaining}]"
NOT_IN_KEY = frozenset({"needs", "concurrency", "timeout_s", "max_attempts", "cache", "prices", "chunk_size", "stream",
                        "max_failure_rate"})


class TooManyFailedGenerations(NepError):
    """More of the test set failed than the predictor's max_failure_rate allows; nothing written."""


def load_examples(path: str | Path) -> list[dict[str, Any]]:
    examples = []
    for n, ex in enumerate(read_jsonl(path), 1):
        missing = [f for f in REQUIRED_FIELDS if not isinstance(ex.get(f), str)]
        if missing:
            raise NepError(f"{path}: record {n} (id {ex.get('id')!r}) lacks string field(s) {', '.join(missing)}")
        examples.append(ex)
    return examples


def fingerprint(path: Path) -> Any:
    """A cheap identity of a local file or directory: content hash of small files, (size, mtime)
    of large ones. A changed model directory therefore never resumes an old checkpoint."""
    if path.is_file():
        stat = path.stat()
        if stat.st_size <= SMALL_FILE:
            return hashlib.sha256(path.read_bytes()).hexdigest()
        return [stat.st_size, stat.st_mtime_ns]
    return sorted(
        [str(f.relative_to(path)), f.stat().st_size, f.stat().st_mtime_ns] for f in path.rglob("*") if f.is_file()
    )


def format_key(fmt: AnswerFormat) -> dict[str, Any]:
    """What of the answer format can change an answer ({} for the paper's: keys stay as they were)."""
    return {} if fmt.options is None or fmt.is_paper else fmt.option_values()


# The code generation runs: dvc.yaml's code deps of the generate stage (a test keeps them equal).
# A change to any of it starts a killed run afresh, as it makes `dvc repro` run the stage again.
CODE = ("stages/generate.py", "nep/core", "nep/util", "nep/config/base.py", "nep/config/params.py",
        "nep/config/schema.py", "nep/llm", "nep/predictors", "nep/train/model.py", "nep/train/attention.py",
        "nep/train/gguf.py", "nep/train/tiny.py")


def code_hash(root: Path | None = None) -> str:
    """sha256 over CODE's Python files (relative path and bytes), from the project root."""
    root = root or Path(__file__).resolve().parents[2]
    h = hashlib.sha256()
    for entry in CODE:
        path = root / entry
        for source in sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else []:
            h.update(source.relative_to(root).as_posix().encode() + b"\0" + source.read_bytes() + b"\0")
    return h.hexdigest()


def checkpoint_key(entry: dict[str, Any], max_new_tokens: int, test_bytes: bytes, max_growth_tokens: int = 0,
                   answer_format: dict[str, Any] | None = None, *, code: str = "",
                   batch: tuple[int, ...] | None = None) -> str:
    """What the saved answers depend on: the entry (options that cannot change an answer aside),
    the local paths it names, the generation limits, the test set's bytes, the answer format, the
    code (`code_hash`) and, for a batch-dependent predictor, (batch_size, threads[, prompt lookup])."""
    # every local path the entry names, `needs` included (a finetuned entry may name its model there only)
    local = {v: fingerprint(Path(v)) for k, v in entry.items()
             if (k == "needs" or k not in NOT_IN_KEY) and isinstance(v, str) and v and Path(v).exists()}
    blob = json.dumps(
        {"entry": {k: v for k, v in entry.items() if k not in NOT_IN_KEY}, "local": local,
         "max_new_tokens": max_new_tokens, "test": hashlib.sha256(test_bytes).hexdigest(),
         **({"max_growth_tokens": max_growth_tokens} if max_growth_tokens else {}),
         **({"format": answer_format} if answer_format else {}),
         **({"code": code} if code else {}), **({"batch": list(batch)} if batch else {})},
        sort_keys=True, ensure_ascii=False, default=str,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:20]


def checkpoint_dir() -> Path:
    return paths.cache_root() / "generate"


class Checkpoint:
    """Answers so far, one JSON line each after a header line naming the key. A line cut short
    by a kill is dropped on load; answers for another test set are refused."""

    def __init__(self, path: Path, key: str, examples: Sequence[dict[str, Any]]):
        self.path, self.key, self.examples = path, key, examples
        self._file = None

    def load(self) -> dict[int, dict[str, Any]]:
        """The saved answers by test-set index; rewrites the file without any torn line."""
        done: dict[int, dict[str, Any]] = {}
        if self.path.exists():
            with self.path.open(encoding="utf-8") as f:
                lines = f.read().split("\n")
            try:
                header_ok = json.loads(lines[0]).get("key") == self.key
            except (json.JSONDecodeError, AttributeError):
                header_ok = False
            for line in lines[1:] if header_ok else []:
                try:
                    entry = json.loads(line)
                    i = entry["i"]
                    if self.examples[i]["id"] == entry["id"]:
                        done[i] = entry
                except (json.JSONDecodeError, KeyError, IndexError, TypeError):
                    continue  # the line a kill cut short
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with tmp.open("w", encoding="utf-8") as f:
                f.write(json.dumps({"key": self.key, "examples": len(self.examples)}) + "\n")
                for i in sorted(done):
                    f.write(json.dumps(done[i], ensure_ascii=False) + "\n")
            os.replace(tmp, self.path)
        except OSError as e:  # NEP_CACHE_DIR read-only or full: one line naming it
            raise (paths.unwritable(e) or e) from None
        return done

    def append(self, entries: list[dict[str, Any]]) -> None:
        if self._file is None:
            self._file = self.path.open("a", encoding="utf-8")
        self._file.write("".join(json.dumps(e, ensure_ascii=False) + "\n" for e in entries))
        self._file.flush()  # in the OS's hands: survives the process being killed

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def remove(self) -> None:
        self.close()
        self.path.unlink(missing_ok=True)


def make_record(example: dict[str, Any], answer: dict[str, Any], fmt: AnswerFormat = PAPER) -> dict[str, Any]:
    """The generation record of one example from its saved answer, read in answer format `fmt`
    (its full next version, or why none: nep.core.formats). An answer that did not end
    (stop tag in nep.predictors.stop.INCOMPLETE) has no next version: extraction `incomplete`."""
    stop = (answer.get("tags") or {}).get("stop")
    if answer["skipped"]:
        output, extracted, how = "", False, answer["skipped"]
    elif stop in INCOMPLETE:  # cut at a token limit or in a loop: the model never finished its answer
        output, extracted, how = "", False, "incomplete"
    elif answer.get("unextracted"):  # its producer read no next version in it (an imported row)
        output, extracted, how = "", False, answer["unextracted"]
    else:
        extraction = fmt.read(answer["raw_output"], answer["style"], example)
        output, extracted, how = extraction.text or "", extraction.ok, extraction.method
    record = {
        "id": example["id"],
        "prompt": example["prompt"],
        "output": output,
        "ground_truth": example["next"],
        # the next version as the template writes it (+ its newline): evaluate.protocol paper_offline
        "template_ground_truth": example.get("completion") if isinstance(example.get("completion"), str)
        else template_completion(example["next"]),
        "language": example.get("language", ""),
        "output_tokens": answer["output_tokens"],
        "raw_output": answer["raw_output"],
        "extracted": extracted,
        "extraction": how,
        **({"stop": stop} if stop else {}),
        # the predictor's other deterministic facts about this answer (propagate's rule, lookup's hit,
        # hybrid's source): the per-example side of the metrics' counts
        **({"tags": tags} if (tags := {k: v for k, v in (answer.get("tags") or {}).items() if k != "stop"}) else {}),
        **({"logprob": answer["logprob"]} if answer.get("logprob") is not None else {}),
    }
    record.update({k: example[k] for k in CARRIED_FIELDS if isinstance(example.get(k), str)})
    return record


def summarize(records: list[dict[str, Any]], answers: list[dict[str, Any]]) -> dict[str, Any]:
    """Deterministic metrics: counts, tokens, extraction reasons, the predictors' tags, and for
    predictors that tag why an answer stopped, the answers `cut` at a token limit (nep.predictors.stop.CUT)."""
    n = len(records)
    extracted = sum(r["extracted"] for r in records)
    tags: Counter = Counter()
    for a in answers:
        tags.update(f"{k}.{v}" for k, v in a["tags"].items())
    cut = {}
    if any("stop" in a["tags"] for a in answers):  # answers ended at a token limit, not by the model
        cut["cut"] = sum(a["tags"].get("stop") in CUT for a in answers)
        cut["cut_rate"] = cut["cut"] / n if n else 0.0
        # answers the model ended itself (not cut at a limit, not stopped in a loop)
        cut["ended"] = sum(a["tags"].get("stop") not in INCOMPLETE and not a.get("skipped") for a in answers)
        cut["ended_rate"] = cut["ended"] / n if n else 0.0
    # next versions that are the current version unchanged (compared without final newlines): no edit
    copies = sum(r["extracted"] and is_copy(r) for r in records)
    return {
        "examples": n,
        "extracted": extracted,
        "unextracted": n - extracted,
        "extracted_rate": extracted / n if n else 0.0,
        "failed": sum(bool(a.get("error")) for a in answers),
        "output_tokens": sum(r["output_tokens"] for r in records),
        **flat_counts("extraction", Counter(r["extraction"] for r in records)),
        **{k: v for k, v in sorted(tags.items())},
        **cut,
        "copies": copies,
        "copy_rate": copies / n if n else 0.0,
    }


def is_copy(record: dict[str, Any]) -> bool:
    """The record's next version is its current version unchanged, up to final newlines."""
    current = current_version(record)
    output = record.get("output")
    return current is not None and isinstance(output, str) and output.rstrip("\n") == current.rstrip("\n")


def answer_entry(i: int, example: dict[str, Any], p: Prediction, style: str) -> dict[str, Any]:
    entry = {"i": i, "id": example["id"], "raw_output": p.raw_output, "output_tokens": p.output_tokens,
             "skipped": p.skipped, "style": p.style or style, "tags": p.tags, "latency_s": round(p.latency_s, 6),
             "batch": p.batch, **({"ttft_s": round(p.ttft_s, 6)} if p.ttft_s is not None else {}),
             **({"logprob": p.logprob} if p.logprob is not None and not p.error else {}),
             **({"unextracted": p.unextracted} if p.unextracted else {})}
    if p.error:  # a failure: recorded like a skip, never saved in the checkpoint
        entry.update(raw_output="", output_tokens=0, skipped=p.error, error=p.error)
    return entry


def check_failures(name: str, predictor: Any, failed: dict[int, dict[str, Any]], total: int) -> None:
    """TooManyFailedGenerations when the failed share of the test set exceeds the predictor's policy."""
    if not failed or len(failed) / total <= predictor.max_failure_rate:
        return
    reasons = Counter(a["error"] for a in failed.values())
    causes = ", ".join(f"{k}: {v}" for k, v in sorted(reasons.items(), key=lambda kv: (-kv[1], kv[0])))
    raise TooManyFailedGenerations(
        f"{len(failed)} of {total} generations failed ({causes}), more than max_failure_rate="
        f"{predictor.max_failure_rate}; nothing written, the {total - len(failed)} answers so far are kept",
        param=predictor.param("max_failure_rate"),
        hint="fix the endpoint and run again: only the failures are asked again",
    )


def generate(
    name: str,
    entry: dict[str, Any],
    settings: Settings,
    *,
    test_path: str | Path = paths.TEST,
    out_path: str | Path | None = None,
    metrics_path: str | Path | None = None,
    timing_path: str | Path | None = None,
    retry_path: str | Path | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Run predictor `name` (its params entry `entry`) over the test set, resuming a killed run;
    write its records, metrics and timing (and, given `retry_path`, the list of tolerated failures
    that the next `dvc repro` asks again: nep.predictors.retry); return the metrics."""
    for noisy in ("httpx", "openai"):  # one INFO line per HTTP request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    predictor = build_predictor(name, entry)
    if entry.get("format"):  # the predictor's own answer format replaces the run's
        settings = dataclasses.replace(settings, answer_format=own_format(name, entry["format"]))
    test_path = Path(test_path)
    if not test_path.is_file():
        raise NepError(f"{test_path}: file not found (run the split stage first)")
    examples = load_examples(test_path)
    batch = None
    if getattr(predictor, "batch_dependent", False):  # prompt lookup answers one prompt per call
        batch = (settings.batch_size, settings.threads, *([settings.prompt_lookup_tokens] * bool(
            settings.prompt_lookup_tokens)))
    key = checkpoint_key(entry, settings.max_new_tokens, test_path.read_bytes(), settings.max_growth_tokens,
                         format_key(settings.answer_format), code=code_hash(), batch=batch)
    folder = checkpoint_dir()
    for stale in folder.glob(f"{name}.*.jsonl"):  # an older run's answers for changed inputs
        old_key = stale.name[len(name) + 1 : -len(".jsonl")]
        if len(old_key) == len(key) and old_key != key and all(c in "0123456789abcdef" for c in old_key):
            stale.unlink()
    checkpoint = Checkpoint(folder / f"{name}.{key}.jsonl", key, examples)
    done = checkpoint.load()
    resumed = len(done)
    if resumed:
        log.info("%s: resuming, %d of %d examples already answered (%s)", name, resumed, len(examples), checkpoint.path)
    todo = [i for i in range(len(examples)) if i not in done]
    asked = set(todo)
    failed: dict[int, dict[str, Any]] = {}  # this run's failures: never in the checkpoint
    start = time.perf_counter()
    try:
        with tqdm(total=len(examples), initial=resumed, desc=name, disable=bars(progress),
                  bar_format=PROGRESS_FORMAT) as bar:
            credit = 0.0  # progress a predictor reported (`predictor.progress`) for answers not yet yielded

            def advance(amount: float) -> None:
                nonlocal credit
                credit += amount
                bar.update(amount)

            predictor.progress = advance
            for group in predictor.predict(examples, todo, settings):
                entries = []
                for i, prediction in group:
                    if i not in asked or i in done or i in failed:
                        raise RuntimeError(f"predictor {name!r} answered example {i} unasked or twice")
                    entry = answer_entry(i, examples[i], prediction, predictor.style)
                    if prediction.error:
                        failed[i] = entry
                    else:
                        done[i] = entry
                        entries.append(entry)
                if entries:
                    checkpoint.append(entries)
                bar.update(len(group) - credit)
                credit = 0.0
    finally:
        checkpoint.close()
    wall = time.perf_counter() - start
    if len(done) + len(failed) != len(examples):
        raise RuntimeError(f"predictor {name!r} left {len(examples) - len(done) - len(failed)} examples unanswered")
    check_failures(name, predictor, failed, len(examples))
    done.update(failed)
    answers = [done[i] for i in range(len(examples))]
    fmt = predictor.reads_as(settings)
    records = [make_record(ex, a, fmt) for ex, a in zip(examples, answers, strict=True)]
    metrics = {**summarize(records, answers), **predictor.report()}
    new = [done[i] for i in todo]
    per_answer = [latency.answer_row(a, i not in asked) for i, a in enumerate(answers)]
    timing = {
        "wall_s": round(wall, 3),
        "examples_generated": len(new) - len(failed),
        "examples_failed": len(failed),
        "examples_resumed": resumed,
        "mean_latency_s": round(sum(a["latency_s"] for a in new) / len(new), 6) if new else 0.0,
        **latency.summary(per_answer, where=predictor.runs_on(settings)),
        **predictor.timing(),
    }
    write_jsonl(out_path or paths.generations(name), records)
    write_metrics(metrics_path or paths.metrics("generate", name), metrics)
    timing_path = Path(timing_path or paths.timing("generate", name))
    write_metrics(timing_path, timing)
    write_jsonl(timing_path.with_suffix(".answers.jsonl"), per_answer)  # per answer: measured, not a DVC output
    if failed:
        causes = ", ".join(f"{k}: {v}" for k, v in sorted(Counter(a["error"] for a in failed.values()).items()))
        log.warning("%s: %d of %d generations failed (%s), within max_failure_rate=%s: written as failures; %s",
                    name, len(failed), len(examples), causes, predictor.max_failure_rate,
                    "the next `dvc repro` asks them again" if retry_path is not None else "a rerun asks them again")
    if retry_path is not None:
        from nep.predictors.retry import write_failures

        write_failures(retry_path, [examples[i]["id"] for i in sorted(failed)])
    if not failed:  # tolerated failures keep it: the retry asks only them
        checkpoint.remove()
    return metrics
