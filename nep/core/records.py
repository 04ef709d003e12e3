"""Commit records in the CommitPackFT schema, and their validation."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

COMMIT_FIELDS = (
    "commit",
    "old_file",
    "new_file",
    "old_contents",
    "new_contents",
    "subject",
    "message",
    "lang",
    "repos",
)
# Fields that must be non-empty strings; the others may be empty (a new file has empty old_contents).
REQUIRED_NONEMPTY = ("commit", "new_file", "lang")


@dataclass
class CommitRecord:
    commit: str
    old_file: str
    new_file: str
    old_contents: str
    new_contents: str
    subject: str
    message: str
    lang: str
    repos: str

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in COMMIT_FIELDS}  # asdict's result, without its deep copy


class RecordError(ValueError):
    """A record that cannot be used; `reason` is a short key for drop metrics."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


def normalize_text(text: str) -> str:
    """CRLF and lone CR become LF, so a line-ending change is not an edit of every line."""
    if "\r" not in text:
        return text
    return text.replace("\r\n", "\n").replace("\r", "\n")


def validate_commit(obj: dict[str, Any]) -> CommitRecord:
    """A CommitRecord from a raw dict, or RecordError naming why not.

    Missing `subject`/`message`/`repos`/`old_file` are tolerated (filled with ""/new_file);
    missing contents, non-string fields and NUL bytes are not.
    """
    values: dict[str, str] = {}
    for name in COMMIT_FIELDS:
        value = obj.get(name)
        if value is None:
            if name in ("old_contents", "new_contents", *REQUIRED_NONEMPTY):
                raise RecordError(f"missing_{name}", f"field '{name}' is missing")
            value = ""
        if not isinstance(value, str):
            raise RecordError(f"bad_type_{name}", f"field '{name}' is {type(value).__name__}, not str")
        values[name] = value
    for name in REQUIRED_NONEMPTY:
        if not values[name]:
            raise RecordError(f"empty_{name}", f"field '{name}' is empty")
    if "\x00" in values["old_contents"] or "\x00" in values["new_contents"]:
        raise RecordError("nul_bytes", "contents hold NUL bytes (binary file)")
    values["old_file"] = values["old_file"] or values["new_file"]
    values["old_contents"] = normalize_text(values["old_contents"])
    values["new_contents"] = normalize_text(values["new_contents"])
    return CommitRecord(**values)


def valid_records(objs: Iterable[dict[str, Any]], drops: Counter) -> Iterator[dict[str, Any]]:
    """The objects that are valid commit records, their fields normalized by `validate_commit` and
    extra fields kept; the others counted in `drops` by reason."""
    for obj in objs:
        try:
            yield {**obj, **validate_commit(obj).to_dict()}
        except RecordError as e:
            drops[e.reason] += 1
