"""External example sets for split: nep's processed JSONL, or the published Next Edit Prediction
dataset (`lurf21/NextEditPrediction`: a `train` split of 3,211 records, a `test` split of 210).

A source is a local JSONL/Parquet file, a local directory standing in for the hub repository (data
files named by split, e.g. data/train.jsonl and data/test.jsonl, read through `datasets`), or a
hub id read through `datasets` at a revision. Its format is told by the fields of its first record:
`current_contents` marks the NEP schema (`commit, message, old_file, new_file, status, old_contents,
new_contents, current_contents, text`), `prompt`/`completion` nep's own processed examples.

NEP records become examples as given, never re-filtered or recomputed: original = `old_contents`,
current = the hand-made `current_contents`, next = `new_contents` (the real next version, the ground
truth of every predictor, as the paper's `generate_api.py` scores), completion = the text after
`<|next_version|>\\n` in `text` (what the paper trains on and its `generate_offline.py` scores:
`new_contents` plus the template newline), or `new_contents` + "\\n" when `text` is absent. The
prompt is nep's (nep.core.prompts), so every predictor reads NEP examples like its own (the paper's
own prompt is `nep.core.prompts.paper_prompt` of the same fields). Exact duplicate records are kept,
as the paper scores them, and counted; each gets its own id.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nep.core.examples import NEEDED, make_example, valid_examples
from nep.core.prompts import NEXT, example_id, template_completion
from nep.data.sources.base import language_of
from nep.data.sources.files import read_records_file
from nep.util.errors import NepError

HUB_ID = "lurf21/NextEditPrediction"
NEP_FIELDS = ("commit", "message", "old_file", "new_file", "status", "old_contents", "new_contents",
              "current_contents", "text")
# Fields an NEP record must carry as strings (the first two non-empty); the others are optional.
STRINGS = ("commit", "new_file", "old_file", "old_contents", "new_contents", "current_contents")
NONEMPTY = ("commit", "new_file")


def is_nep_record(obj: dict[str, Any]) -> bool:
    return "current_contents" in obj


def ground_truth(record: dict[str, Any]) -> str:
    """The real next version: `new_contents`."""
    return record["new_contents"]


def template_tail(record: dict[str, Any]) -> str:
    """The next version as the paper's template writes it (its training target, and the ground truth
    of its `generate_offline.py`): `text` after the first `<|next_version|>` line, up to a second
    one; without `text`, `new_contents` plus the template newline."""
    text = record.get("text")
    marker = f"{NEXT}\n"
    if isinstance(text, str) and marker in text:
        return text.split(marker)[1]
    return template_completion(record["new_contents"])


def _invalid(record: dict[str, Any]) -> str | None:
    """Why an NEP record cannot be used (a drop reason), or None."""
    for name in STRINGS:
        value = record.get(name)
        if value is None:
            return f"missing_{name}"
        if not isinstance(value, str):
            return f"bad_type_{name}"
    for name in NONEMPTY:
        if not record[name]:
            return f"empty_{name}"
    if record.get("text") is not None and not isinstance(record["text"], str):
        return "bad_type_text"
    return None


def nep_examples(rows: Iterable[dict[str, Any]], drops: Counter, stats: Counter) -> Iterator[dict[str, Any]]:
    """Examples of NEP records in input order; unusable records counted in `drops` by reason, and in
    `stats`: `duplicates_kept` (records identical to an earlier one), `next_from_text` (completion
    taken from `text`), `text_disagrees` (its next version is not `new_contents` + newline),
    `prompt_differs_from_text` (nep's prompt is not the text's prompt part: the paper's template
    always adds a newline after each section, nep's only where one is missing) and `language.<L>`
    (from the new file's extension; `unknown` when not one of nep's languages)."""
    seen_records: set[bytes] = set()
    seen_ids: Counter = Counter()
    for row in rows:
        if reason := _invalid(row):
            drops[reason] += 1
            continue
        digest = hashlib.sha1(json.dumps(row, sort_keys=True, default=str).encode()).digest()
        if digest in seen_records:
            stats["duplicates_kept"] += 1
        seen_records.add(digest)
        commit, old_file, new_file = row["commit"], row["old_file"], row["new_file"]
        base = example_id(commit, old_file, new_file)
        seen_ids[base] += 1
        eid = base if seen_ids[base] == 1 else example_id(base, str(seen_ids[base]))
        tail = template_tail(row)
        if tail != template_completion(row["new_contents"]):
            stats["text_disagrees"] += 1
        language = language_of(new_file) or language_of(old_file) or "unknown"
        stats[f"language.{language}"] += 1
        example = make_example(
            id=eid, repos="", commit=commit, old_file=old_file, new_file=new_file, language=language,
            timestamp=None, original=row["old_contents"], current=row["current_contents"],
            next=ground_truth(row), completion=tail,
        )
        text = row.get("text")
        if isinstance(text, str) and f"{NEXT}\n" in text:
            stats["next_from_text"] += 1
            if text.split(f"{NEXT}\n")[0] + f"{NEXT}\n" != example.prompt:
                stats["prompt_differs_from_text"] += 1
        yield example.to_dict()


@dataclass
class External:
    """Examples read from an external source, with its format and counts."""

    examples: list[dict[str, Any]]
    format: str  # "nep" (the published schema) | "processed" (nep's own examples)
    drops: Counter = field(default_factory=Counter)
    stats: Counter = field(default_factory=Counter)


def _is_hub_id(source: str) -> bool:
    return re.fullmatch(r"[\w.-]+/[\w.-]+", source) is not None


def _offline_help(param: str) -> str:
    return (f"online, check the id and split.external_revision; offline, run once online (datasets caches "
            f"it) and set HF_HUB_OFFLINE=1, or set split.{param} to a local JSONL/Parquet file or to a "
            "directory holding data/train.jsonl and data/test.jsonl")


def _with_datasets(name: str, *, split: str, revision: str | None, param: str, hub: bool) -> list[dict[str, Any]]:
    import datasets

    try:
        ds = datasets.load_dataset(name, split=split, revision=revision)
    except Exception as e:  # datasets and huggingface_hub raise many types for one failure
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        where = f"the Hugging Face hub (revision {revision})" if hub else "a local directory"
        help_ = _offline_help(param) if hub else "it needs data files named by split (data/train.jsonl, data/test.jsonl)"
        raise NepError(f"split.{param}: cannot read split '{split}' of {name} from {where}: "
                         f"{type(e).__name__}: {reason}; {help_}") from e
    return [dict(r) for r in ds]


def load_rows(source: str, *, split: str, revision: str, param: str, drops: Counter) -> list[dict[str, Any]]:
    """Raw records of `source`: a local JSONL/Parquet file, a local directory (its `split`), or a hub
    id (its `split` at `revision`)."""
    path = Path(source)
    if path.is_file():
        return list(read_records_file(path, drops))
    if path.is_dir():
        return _with_datasets(str(path.resolve()), split=split, revision=None, param=param, hub=False)
    if _is_hub_id(source):
        return _with_datasets(source, split=split, revision=revision, param=param, hub=True)
    raise NepError(f"split.{param}: {source}: no such file or directory, and not a hub id (owner/name)")


def load_external(source: str, *, split: str, revision: str, param: str) -> External:
    """The examples of an external source, in its order (see the module docstring)."""
    drops: Counter = Counter()
    rows = load_rows(source, split=split, revision=revision, param=param, drops=drops)
    if not rows:
        raise NepError(f"split.{param}: {source}: no record")
    first = rows[0]
    if is_nep_record(first):
        stats: Counter = Counter()
        ext = External(list(nep_examples(rows, drops, stats)), "nep", drops, stats)
    elif all(k in first for k in NEEDED):
        ext = External(valid_examples(rows, drops), "processed", drops)
    else:
        raise NepError(
            f"split.{param}: {source}: neither the NEP schema ({', '.join(NEP_FIELDS)}) nor nep's processed "
            f"examples ({', '.join(NEEDED)}, ...); its first record has {', '.join(sorted(first)) or 'no field'}"
        )
    if not ext.examples:
        raise NepError(f"split.{param}: {source}: no valid example (dropped: {dict(ext.drops)})")
    if split == "test":  # generations, judgments and scores are joined by id: one example each
        counts = Counter(str(e["id"]) for e in ext.examples)
        repeated = [i for i, n in counts.items() if n > 1]
        if repeated:
            shown = ", ".join(f"{i!r} ({counts[i]} times)" for i in repeated[:3]) + (", ..." if len(repeated) > 3 else "")
            raise NepError(f"{source}: {len(repeated)} id(s) name more than one test example (first: {shown}); "
                           "generations and judgments are joined by id", param=f"split.{param}",
                           hint="give each test example its own id")
    return ext
