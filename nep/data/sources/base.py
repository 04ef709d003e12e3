"""What every commit record source (nep.data.sources: git, files, hub) shares.

Every source yields record dicts in the CommitPackFT schema (nep.core.records) in a deterministic order
and counts what it drops, by reason, in a `Counter` the caller passes in. Here: the languages by
file extension, the record check and the duplicate filter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nep.core.records import RecordError, validate_commit

# The paper's seven languages, by file extension (`.h` counts as C).
EXTENSIONS: dict[str, str] = {
    ".py": "Python",
    ".java": "Java",
    ".go": "Go",
    ".c": "C",
    ".h": "C",
    ".cc": "C++",
    ".cpp": "C++",
    ".cxx": "C++",
    ".c++": "C++",
    ".hh": "C++",
    ".hpp": "C++",
    ".hxx": "C++",
    ".h++": "C++",
    ".js": "JavaScript",
    ".jsx": "JavaScript",
    ".mjs": "JavaScript",
    ".cjs": "JavaScript",
    ".ts": "TypeScript",
    ".tsx": "TypeScript",
    ".mts": "TypeScript",
    ".cts": "TypeScript",
}
DEFAULT_LANGUAGES = ("Python", "Java", "Go", "C", "C++", "JavaScript", "TypeScript")


def language_of(path: str) -> str | None:
    """The language of a file from its extension, or None."""
    return EXTENSIONS.get(Path(path).suffix.lower())


def checked_record(obj: dict[str, Any], languages: Iterable[str] | None, drops: Counter) -> dict[str, Any] | None:
    """The record as a clean CommitPackFT dict (plus an int `timestamp` when present), or None
    after counting why it was dropped."""
    try:
        record = validate_commit(obj).to_dict()
    except RecordError as e:
        drops[e.reason] += 1
        return None
    if languages is not None and record["lang"] not in languages:
        drops["other_language"] += 1
        return None
    timestamp = obj.get("timestamp")
    if timestamp is not None:
        if isinstance(timestamp, bool) or not isinstance(timestamp, int):
            drops["bad_type_timestamp"] += 1
            return None
        record["timestamp"] = timestamp
    if record["old_contents"] == record["new_contents"]:
        drops["unchanged"] += 1
        return None
    return record


def dedupe(records: Iterable[dict[str, Any]], drops: Counter) -> Iterator[dict[str, Any]]:
    """Drop (and count) repeated (repos, commit, old_file, new_file) records, keeping the first."""
    seen: set[tuple[str, str, str, str]] = set()
    for r in records:
        key = (r["repos"], r["commit"], r["old_file"], r["new_file"])
        if key in seen:
            drops["duplicate"] += 1
            continue
        seen.add(key)
        yield r
