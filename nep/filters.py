"""The paper's commit filters, cheap checks first.

A record survives when:
- `len(old) + len(new) <= max_chars`;
- it has at least `min_chunks` edit chunks (nep.edits), every one of an allowed `edit_types`;
- no chunk shows more than `max_chunk_lines` changed (`-`/`+`) lines;
- the first-to-last chunk window spans at most `max_window_lines` lines in both old and new;
- `2 * tokens(old + new) <= max_tokens` (tiktoken, `encoding`).

Chunks are computed once per record, and only records that pass every other check are tokenized
(in one threaded batch). Since a token is at least one byte, a record whose `2 * bytes` is within
`max_tokens` passes without tokenizing. A limit of 0 (or null) disables that check.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from nep.edits import EDIT_TYPES, compute_chunks, window_lines
from nep.jsonl import flat_counts
from nep.tokens import DEFAULT_ENCODING, count_tokens_batch


@dataclass(frozen=True)
class FilterConfig:
    max_chars: int = 32768
    max_tokens: int = 8192
    encoding: str = DEFAULT_ENCODING
    min_chunks: int = 2
    max_chunk_lines: int = 5
    max_window_lines: int = 80
    edit_types: tuple[str, ...] = ("add",)

    def __post_init__(self) -> None:
        unknown = set(self.edit_types) - set(EDIT_TYPES)
        if unknown or not self.edit_types:
            raise ValueError(f"filter.edit_types must be a non-empty subset of {list(EDIT_TYPES)}, got {list(self.edit_types)}")
        object.__setattr__(self, "edit_types", tuple(self.edit_types))


def structural_reason(old: str, new: str, config: FilterConfig) -> str | None:
    """Why old → new fails a check other than the token count, or None when it passes them."""
    if config.max_chars and len(old) + len(new) > config.max_chars:
        return "too_many_chars"
    if old == new:
        return "no_change"
    chunks = compute_chunks(old, new)
    if not chunks:
        return "no_change"
    if len(chunks) < config.min_chunks:
        return "too_few_chunks"
    if any(c.type not in config.edit_types for c in chunks):
        return "edit_type"
    if config.max_chunk_lines and any(c.changed_lines > config.max_chunk_lines for c in chunks):
        return "chunk_too_long"
    if config.max_window_lines and max(window_lines(chunks)) > config.max_window_lines:
        return "window_too_long"
    return None


@dataclass
class FilterResult:
    kept: list[dict[str, Any]]
    dropped: Counter = field(default_factory=Counter)
    language_in: Counter = field(default_factory=Counter)

    def metrics(self) -> dict[str, int]:
        metrics = {"records_in": sum(self.language_in.values()), "records_out": len(self.kept)}
        metrics.update(flat_counts("dropped", self.dropped))
        language_out = Counter(r["lang"] for r in self.kept)
        for lang in sorted(self.language_in):
            metrics[f"language.{lang}.in"] = self.language_in[lang]
            metrics[f"language.{lang}.out"] = language_out[lang]
        return metrics


def filter_records(records: Iterable[dict[str, Any]], config: FilterConfig, *, progress: bool = False) -> FilterResult:
    """Keep the records (validated dicts with `old_contents`, `new_contents`, `lang`) that pass
    every filter, in input order; count the others by reason and language."""
    from tqdm import tqdm

    result = FilterResult(kept=[])
    candidates: list[dict[str, Any]] = []
    for r in tqdm(records, desc="filter", unit="rec", disable=not progress):
        result.language_in[r["lang"]] += 1
        reason = structural_reason(r["old_contents"], r["new_contents"], config)
        if reason:
            result.dropped[reason] += 1
        else:
            candidates.append(r)
    keep = [True] * len(candidates)
    if config.max_tokens:
        # A token is at least one byte: only records that could exceed the limit are tokenized.
        unsure = [
            i for i, r in enumerate(candidates)
            if 2 * len((r["old_contents"] + r["new_contents"]).encode("utf-8")) > config.max_tokens
        ]
        texts = [candidates[i]["old_contents"] + candidates[i]["new_contents"] for i in unsure]
        for i, n in zip(unsure, count_tokens_batch(texts, config.encoding) if texts else []):
            if 2 * n > config.max_tokens:
                keep[i] = False
                result.dropped["too_many_tokens"] += 1
    result.kept = [r for r, ok in zip(candidates, keep) if ok]
    return result
