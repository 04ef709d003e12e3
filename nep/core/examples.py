"""Next-edit examples: what the process stage writes and every later stage reads.

An example holds the three versions of one file (original → current → next), the training text in
nep's prompt format (nep.core.prompts) and where it came from (repository, commit, old and new path).
`build_examples` makes them from labeled commit records (CommitPackFT schema, nep.core.records);
nep.data.nep_dataset makes them from the published Next Edit Prediction dataset.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from nep.core.edits import compute_chunks, current_version, trim_to_window
from nep.core.prompts import build_training_text, example_id
from nep.core.records import RecordError, validate_commit
from nep.util.errors import NepError
from nep.util.jsonl import read_jsonl

# Fields a processed example must carry as strings to be split, trained on and scored.
NEEDED = ("id", "repos", "commit", "prompt", "completion")


@dataclass
class Example:
    id: str
    repos: str  # repository name; "" when the source does not say (the NEP dataset)
    commit: str
    path: str  # the file's path after the commit (= new_file)
    old_file: str
    new_file: str
    language: str
    timestamp: int | None  # commit time, unix seconds; None when unknown
    original: str
    current: str
    next: str  # the real next version: the ground truth of every metric
    prompt: str  # nep.core.prompts.build_prompt(original, current)
    completion: str  # what the model is trained to write: next + the template newline
    text: str  # prompt + completion

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def make_example(
    *, id: str, repos: str, commit: str, old_file: str, new_file: str, language: str,
    timestamp: int | None, original: str, current: str, next: str, completion: str | None = None,
) -> Example:
    """An example with its training text built from the three versions (path = new_file). The
    completion is the next version plus the template newline, unless given (an NEP record's own)."""
    text = build_training_text(original, current, next, path=new_file)
    completion = text.completion if completion is None else completion
    return Example(
        id=id, repos=repos, commit=commit, path=new_file, old_file=old_file, new_file=new_file,
        language=language, timestamp=timestamp, original=original, current=current, next=next,
        prompt=text.prompt, completion=completion, text=text.prompt + completion,
    )


def _label_drop(obj: dict[str, Any]) -> str | None:
    """Why a labeled record is not relevant (a drop reason), or None when it is labeled 1."""
    if "label" not in obj:
        return "missing_label"
    label = obj["label"]
    if label is None:
        return "label_null"
    if isinstance(label, bool) or label not in (0, 1):
        return "bad_label"
    return "not_relevant" if label == 0 else None


def _window_key(obj: dict[str, Any]) -> tuple[str, ...]:
    """The id field of a record that is one window of a file's diff (filter `windows: clusters`:
    `window.index`), so that each window is its own example; () for a whole file."""
    window = obj.get("window")
    if isinstance(window, dict) and isinstance(window.get("index"), int) and not isinstance(window["index"], bool):
        return (f"window {window['index']}",)
    return ()


def build_examples(
    records: Iterable[dict[str, Any]], drops: Counter, *, context_lines: int = 0
) -> Iterator[dict[str, Any]]:
    """Examples of the relevant (label 1) records, in input order; the others counted in `drops`.

    The current version is the new file with its last chunk reverted (nep.core.edits.current_version).
    A record that is one window of a file (filter `windows: clusters`) is built like a file, with the
    window's index in its id.
    With `context_lines` > 0, each file is first cut to its edit window plus that many lines each side
    (the stage always passes `process.context_lines`; 0 here means whole files, for callers in tests).
    """
    seen: set[str] = set()
    for obj in records:
        if reason := _label_drop(obj):
            drops[reason] += 1
            continue
        try:
            r = validate_commit(obj)
        except RecordError as e:
            drops[e.reason] += 1
            continue
        chunks = compute_chunks(r.old_contents, r.new_contents)
        if not chunks:
            drops["no_chunk"] += 1
            continue
        old, new = r.old_contents, r.new_contents
        if context_lines > 0:
            old, new = trim_to_window(old, new, context_lines, chunks)
            chunks = compute_chunks(old, new)
        if len(chunks) < 2:
            drops["no_edit_history"] += 1  # a single chunk: nothing precedes the next edit
            continue
        eid = example_id(r.repos, r.commit, r.old_file, r.new_file, *_window_key(obj))
        if eid in seen:
            drops["duplicate"] += 1
            continue
        seen.add(eid)
        timestamp = obj.get("timestamp")
        yield make_example(
            id=eid, repos=r.repos, commit=r.commit, old_file=r.old_file, new_file=r.new_file,
            language=r.lang,
            timestamp=timestamp if isinstance(timestamp, int) and not isinstance(timestamp, bool) else None,
            original=old, current=current_version(old, new, chunks), next=new,
        ).to_dict()


def valid_examples(objs: Iterable[dict[str, Any]], drops: Counter) -> list[dict[str, Any]]:
    """The objects that carry every NEEDED field as a string; the others counted as `bad_example`."""
    kept = []
    for obj in objs:
        if any(not isinstance(obj.get(k), str) for k in NEEDED):
            drops["bad_example"] += 1
            continue
        kept.append(obj)
    return kept


def read_examples(path: str | Path, drops: Counter) -> list[dict[str, Any]]:
    """Processed examples of a JSONL file (malformed lines and bad examples counted in `drops`)."""
    return valid_examples(read_jsonl(path, drops), drops)


def read_training_set(path: str | Path, drops: Counter) -> list[dict[str, Any]]:
    """Every object of a training file (malformed lines counted in `drops`; the trainer counts
    unusable examples itself). NepError when there is none."""
    records = list(read_jsonl(path, drops))
    if not records:
        raise NepError(f"{path}: no training examples")
    return records
