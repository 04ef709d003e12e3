"""The paper's commit filters, cheap checks first, with the paper's own diff view.

A record survives when:
- `len(old) + len(new) <= max_chars`;
- its unified diff (difflib, lines compared without their endings, as the paper's script diffs
  `splitlines()`: a change of only the final newline is no edit) has at least `min_chunks` edit
  chunks (runs of `-`/`+` lines, nep.edits.diff_chunks), every one of an allowed `edit_types`;
- no chunk shows more than `max_chunk_lines` changed (`-`/`+`) lines;
- the window from the first hunk to the last, hunks including their `hunk_context_lines` (3)
  context lines as in the `@@` headers the paper reads, spans at most `max_window_lines` lines in
  both old and new (nep.edits.hunk_window);
- `2 * tokens(old + new) <= max_tokens` (tiktoken, `encoding`); text holding a special token
  (`<|endoftext|>`...) is dropped as `special_token`, since the paper's `enc.encode` refuses it.

Chunks are computed once per record, and only records that pass every other check are tokenized,
in bounded batches. Since a token is at least one byte, a record whose `2 * bytes` is within
`max_tokens` passes without tokenizing. A limit of 0 (or null) disables that check.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from nep.edits import EDIT_TYPES, diff_chunks, diff_hunks, hunk_window
from nep.jsonl import flat_counts
from nep.tokens import DEFAULT_ENCODING, count_tokens_batch, special_tokens

# Records tokenized together: bounds the filter's working set whatever the input size.
TOKEN_BATCH_RECORDS = 64
TOKEN_BATCH_CHARS = 1 << 20


@dataclass(frozen=True)
class FilterConfig:
    max_chars: int = 32768
    max_tokens: int = 8192
    encoding: str = DEFAULT_ENCODING
    min_chunks: int = 2
    max_chunk_lines: int = 5
    max_window_lines: int = 80
    edit_types: tuple[str, ...] = ("add",)
    hunk_context_lines: int = 3

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
    chunks = diff_chunks(old, new)
    if not chunks:
        return "no_change"
    if len(chunks) < config.min_chunks:
        return "too_few_chunks"
    if any(c.type not in config.edit_types for c in chunks):
        return "edit_type"
    if config.max_chunk_lines and any(c.changed_lines > config.max_chunk_lines for c in chunks):
        return "chunk_too_long"
    if config.max_window_lines:
        hunks = diff_hunks(chunks, len(old.splitlines()), len(new.splitlines()), config.hunk_context_lines)
        window = hunk_window(hunks)
        if window is None or max(window) > config.max_window_lines:
            return "window_too_long"
    return None


def token_reasons(texts: list[str], config: FilterConfig, threads: int = 2) -> list[str | None]:
    """Per text (old + new): `too_many_tokens`, `special_token` or None (it passes)."""
    reasons: list[str | None] = [None] * len(texts)
    if not config.max_tokens or not texts:
        return reasons
    specials = special_tokens(config.encoding)
    unsure = []
    for i, text in enumerate(texts):
        if "<|" in text and any(s in text for s in specials):
            reasons[i] = "special_token"
        elif 8 * len(text) > config.max_tokens and 2 * len(text.encode("utf-8", "surrogatepass")) > config.max_tokens:
            unsure.append(i)  # a token is at least one byte: only these could exceed the limit
    if unsure:
        counts = count_tokens_batch([texts[i] for i in unsure], config.encoding, threads=threads)
        for i, n in zip(unsure, counts):
            if 2 * n > config.max_tokens:
                reasons[i] = "too_many_tokens"
    return reasons


def filter_stream(records: Iterable[dict[str, Any]], config: FilterConfig, dropped: Counter,
                  language_in: Counter | None = None, threads: int = 2) -> Iterator[dict[str, Any]]:
    """The records (validated dicts with `old_contents`, `new_contents`, `lang`) that pass every
    filter, in input order, tokenizing in bounded batches; the others are counted in `dropped`."""
    batch: list[dict[str, Any]] = []
    chars = 0
    for r in records:
        if language_in is not None:
            language_in[r["lang"]] += 1
        reason = structural_reason(r["old_contents"], r["new_contents"], config)
        if reason:
            dropped[reason] += 1
            continue
        batch.append(r)
        chars += len(r["old_contents"]) + len(r["new_contents"])
        if len(batch) >= TOKEN_BATCH_RECORDS or chars >= TOKEN_BATCH_CHARS:
            yield from _tokens_checked(batch, config, dropped, threads)
            batch, chars = [], 0
    yield from _tokens_checked(batch, config, dropped, threads)


def _tokens_checked(batch: list[dict[str, Any]], config: FilterConfig, dropped: Counter, threads: int):
    reasons = token_reasons([r["old_contents"] + r["new_contents"] for r in batch], config, threads)
    for r, reason in zip(batch, reasons):
        if reason:
            dropped[reason] += 1
        else:
            yield r


@dataclass
class FilterResult:
    kept: list[dict[str, Any]]
    dropped: Counter = field(default_factory=Counter)
    language_in: Counter = field(default_factory=Counter)
    language_out: Counter | None = None

    def metrics(self) -> dict[str, int]:
        language_out = self.language_out if self.language_out is not None else Counter(r["lang"] for r in self.kept)
        metrics = {"records_in": sum(self.language_in.values()), "records_out": sum(language_out.values())}
        metrics.update(flat_counts("dropped", self.dropped))
        for lang in sorted(self.language_in):
            metrics[f"language.{lang}.in"] = self.language_in[lang]
            metrics[f"language.{lang}.out"] = language_out[lang]
        return metrics


def filter_records(records: Iterable[dict[str, Any]], config: FilterConfig, *, progress: bool = False) -> FilterResult:
    """Keep the records that pass every filter, in input order (in memory: the stage streams
    through nep.batches instead); count the others by reason and language."""
    from tqdm import tqdm

    result = FilterResult(kept=[])
    stream = tqdm(records, desc="filter", unit="rec", disable=not progress)
    result.kept = list(filter_stream(stream, config, result.dropped, result.language_in))
    return result
