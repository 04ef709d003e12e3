"""The paper's commit filters, cheap checks first, with the paper's own diff view.

A record survives when:
- `len(old) + len(new) <= max_chars`;
- its unified diff (difflib, lines compared without their endings, as the paper's script diffs
  `splitlines()`: a change of only the final newline is no edit) has at least `min_chunks` edit
  chunks (runs of `-`/`+` lines, nep.core.edits.diff_chunks), every one of an allowed `edit_types`;
- no chunk shows more than `max_chunk_lines` changed (`-`/`+`) lines;
- the window from the first hunk to the last, hunks including their `hunk_context_lines` (3)
  context lines as in the `@@` headers the paper reads, spans at most `max_window_lines` lines in
  both old and new (nep.core.edits.hunk_window);
- `2 * tokens(old + new) <= max_tokens` (tiktoken, `encoding`); text holding a special token
  (`<|endoftext|>`...) is dropped as `special_token`, since the paper's `enc.encode` refuses it.

With `windows: clusters` a file's diff is cut into clusters of nearby chunks instead, each checked
like a record and written as one (see `cluster_windows`): one file gives several examples.

Chunks are computed once per record, and only records that pass every other check are tokenized,
in bounded batches. Since a token is at least one byte, a record whose `2 * bytes` is within
`max_tokens` passes without tokenizing. A limit of 0 (or null) disables that check.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from nep.config.schema import Filter
from nep.core.edits import diff_hunks, diff_spans, hunk_window
from nep.core.edits import split_lines as file_lines
from nep.core.records import valid_records
from nep.data.ingest import split_lines, whole_index
from nep.data.sources.base import checked_record
from nep.data.sources.hub import local_path
from nep.data.tokens import count_tokens_batch, get_encoding, special_tokens
from nep.util.batches import line_blocks, ordered_map, read_ranges, worker_count
from nep.util.errors import NepError
from nep.util.jsonl import flat_counts, parse_line, parse_object, write_lines

# Records tokenized together: bounds the filter's working set whatever the input size.
TOKEN_BATCH_RECORDS = 64
TOKEN_BATCH_CHARS = 1 << 20


def paper_filter(**overrides: Any) -> Filter:
    """The PAPER's filter (add-only chunks; every other threshold is the schema's default, which is
    the paper's), with `overrides`: what the benchmarks and tests compare against. The pipeline
    passes its `filter:` section (nep.config.schema.Filter) instead."""
    values = {"edit_types": ["add"], **overrides}
    return Filter(**{k: list(v) if isinstance(v, tuple) else v for k, v in values.items()})


def structural_reason(old: str, new: str, config: Filter) -> str | None:
    """Why old → new fails a check other than the token count, or None when it passes them."""
    if config.max_chars and len(old) + len(new) > config.max_chars:
        return "too_many_chars"
    if old == new:
        return "no_change"
    spans, old_lines, new_lines = diff_spans(old, new)
    if not spans:
        return "no_change"
    if len(spans) < config.min_chunks:
        return "too_few_chunks"
    types = {"add" if i1 == i2 else "delete" if j1 == j2 else "replace" for i1, i2, j1, j2 in spans}
    if not types <= set(config.edit_types):
        return "edit_type"
    if config.max_chunk_lines and any(i2 - i1 + j2 - j1 > config.max_chunk_lines for i1, i2, j1, j2 in spans):
        return "chunk_too_long"
    if config.max_window_lines:
        window = hunk_window(diff_hunks(spans, old_lines, new_lines, config.hunk_context_lines))
        if window is None or max(window) > config.max_window_lines:
            return "window_too_long"
    return None


# ------------------------------------------------------------------ windows: clusters of nearby chunks

Span = tuple[int, int, int, int]  # (old_start, old_end, new_start, new_end), 0-based lines, half-open


def _fits(spans: list[Span], old_lines: int, new_lines: int, config: Filter) -> bool:
    """Whether chunks `spans` pass the window check as a record's chunks would."""
    if not config.max_window_lines:
        return True
    window = hunk_window(diff_hunks(spans, old_lines, new_lines, config.hunk_context_lines))
    return window is not None and max(window) <= config.max_window_lines


def cluster_windows(old: str, new: str, config: Filter, counts: Counter) -> tuple[str | None, list[Span]]:
    """`windows: clusters`: the slices of old → new that become records, or why none does.

    The paper's checks, applied to clusters of chunks rather than to the whole file:
    - a chunk of a type outside `edit_types`, or showing more than `max_chunk_lines` changed lines,
      belongs to no cluster (counted `chunks.dropped.<reason>`) and separates the chunks around it;
    - between two such chunks, consecutive chunks form clusters greedily in file order: a cluster
      takes the next chunk while the window check (`max_window_lines`, hunks with their
      `hunk_context_lines`, measured as for a record) still passes with it, else a new cluster starts;
    - a cluster with fewer than `min_chunks` chunks (a lone edit: no history) is counted
      `windows.dropped.too_few_chunks`; one whose window the paper could not read,
      `windows.dropped.window_too_long`.
    Each kept cluster's slice runs from the end of the chunk before it to the start of the chunk
    after it (file start and end at the edges): every line outside its own chunks is unchanged, the
    same in old and new, so the file's other edits are neither its history nor its next edit (see
    docs/data.md). Returns (the file's drop reason or None, slices as (old_start, old_end, new_start,
    new_end) line ranges); `counts` gets the chunk and window counts."""
    if config.max_chars and len(old) + len(new) > config.max_chars:
        return "too_many_chars", []
    if old == new:
        return "no_change", []
    spans, old_lines, new_lines = diff_spans(old, new)
    if not spans:
        return "no_change", []
    if len(spans) < config.min_chunks:
        return "too_few_chunks", []
    counts["chunks.in"] += len(spans)
    clusters: list[list[int]] = []  # indexes into spans
    current: list[int] = []
    for k, (i1, i2, j1, j2) in enumerate(spans):
        kind = "add" if i1 == i2 else "delete" if j1 == j2 else "replace"
        reason = ("edit_type" if kind not in config.edit_types
                  else "chunk_too_long" if config.max_chunk_lines and i2 - i1 + j2 - j1 > config.max_chunk_lines
                  else None)
        if reason:
            counts[f"chunks.dropped.{reason}"] += 1
            if current:
                clusters.append(current)
            current = []
            continue
        if current and not _fits([spans[m] for m in current + [k]], old_lines, new_lines, config):
            clusters.append(current)
            current = []
        current.append(k)
    if current:
        clusters.append(current)
    slices: list[Span] = []
    for cluster in clusters:
        if len(cluster) < config.min_chunks:
            counts["windows.dropped.too_few_chunks"] += 1
            continue
        if len(cluster) == 1 or not _fits([spans[m] for m in cluster], old_lines, new_lines, config):
            counts["windows.dropped.window_too_long"] += 1  # min_chunks 1: a lone chunk's unreadable window
            continue
        first, last = spans[cluster[0]], spans[cluster[-1]]
        a0 = spans[cluster[0] - 1][1] if cluster[0] > 0 else 0
        a1 = spans[cluster[-1] + 1][0] if cluster[-1] + 1 < len(spans) else old_lines
        slices.append((a0, a1, first[2] - (first[0] - a0), last[3] + (a1 - last[1])))
        counts["chunks.in_windows"] += len(cluster)
    return (None if slices else "no_window"), slices


def window_records(record: dict[str, Any], slices: list[Span]) -> list[dict[str, Any]]:
    """One record per slice: the file's old and new contents cut to it, and `window` = {index (in
    the file, 0-based), old_start, new_start (the slice's first line, 0-based)}."""
    a, b = file_lines(record["old_contents"]), file_lines(record["new_contents"])
    return [
        {**record, "old_contents": "".join(a[a0:a1]), "new_contents": "".join(b[b0:b1]),
         "window": {"index": k, "old_start": a0, "new_start": b0}}
        for k, (a0, a1, b0, b1) in enumerate(slices)
    ]


def token_reasons(texts: list[str], config: Filter, threads: int = 2) -> list[str | None]:
    """Per text (old + new): `too_many_tokens`, `special_token` or None (it passes)."""
    reasons: list[str | None] = [None] * len(texts)
    if not config.max_tokens or not texts:
        return reasons
    unsure = []
    for i, text in enumerate(texts):
        if "<|" in text and any(s in text for s in special_tokens(config.encoding)):
            reasons[i] = "special_token"
        elif 8 * len(text) > config.max_tokens and 2 * len(text.encode("utf-8", "surrogatepass")) > config.max_tokens:
            unsure.append(i)  # a token is at least one byte: only these could exceed the limit
    if unsure:
        counts = count_tokens_batch([texts[i] for i in unsure], config.encoding, threads=threads)
        for i, n in zip(unsure, counts):
            if 2 * n > config.max_tokens:
                reasons[i] = "too_many_tokens"
    return reasons


def filter_stream(records: Iterable[dict[str, Any]], config: Filter, dropped: Counter,
                  language_in: Counter | None = None, threads: int = 2) -> Iterator[dict[str, Any]]:
    """The records (validated dicts with `old_contents`, `new_contents`, `lang`) that pass every
    filter, in input order, tokenizing in bounded batches; the others are counted in `dropped`."""
    batch: list[dict[str, Any]] = []
    files: list[int] = []  # per batch row: which input record it comes from (windows: clusters)
    chars = 0
    for n, r in enumerate(records):
        if language_in is not None:
            language_in[r["lang"]] += 1
        if config.windows == "clusters":
            reason, slices = cluster_windows(r["old_contents"], r["new_contents"], config, dropped)
            rows = window_records(r, slices)
        else:
            reason, rows = structural_reason(r["old_contents"], r["new_contents"], config), [r]
        if reason:
            dropped[reason] += 1
            continue
        batch.extend(rows)  # a file's windows stay in one batch
        files.extend([n] * len(rows))
        chars += sum(len(row["old_contents"]) + len(row["new_contents"]) for row in rows)
        if len(batch) >= TOKEN_BATCH_RECORDS or chars >= TOKEN_BATCH_CHARS:
            yield from _tokens_checked(batch, files, config, dropped, threads)
            batch, files, chars = [], [], 0
    yield from _tokens_checked(batch, files, config, dropped, threads)


def _tokens_checked(batch: list[dict[str, Any]], files: list[int], config: Filter, dropped: Counter, threads: int):
    reasons = token_reasons([r["old_contents"] + r["new_contents"] for r in batch], config, threads)
    if config.windows != "clusters":
        for r, reason in zip(batch, reasons):
            if reason:
                dropped[reason] += 1
            else:
                yield r
        return
    kept: Counter = Counter()
    last_reason: dict[int, str] = {}
    for r, file, reason in zip(batch, files, reasons):
        if reason:
            dropped[f"windows.dropped.{reason}"] += 1
            last_reason[file] = reason
        else:
            kept[file] += 1
            yield r
    for file, reason in last_reason.items():
        if not kept[file]:
            dropped[reason] += 1  # every window of the file failed the token check
    dropped["files_out"] += len(kept)


@dataclass
class FilterResult:
    kept: list[dict[str, Any]]
    dropped: Counter = field(default_factory=Counter)
    language_in: Counter = field(default_factory=Counter)
    language_out: Counter | None = None
    windows: str = "file"  # the filter's `windows` param: what metrics() reports

    def metrics(self) -> dict[str, int]:
        language_out = self.language_out if self.language_out is not None else Counter(r["lang"] for r in self.kept)
        metrics = {"records_in": sum(self.language_in.values()), "records_out": sum(language_out.values())}
        metrics.update(flat_counts("dropped", {k: v for k, v in self.dropped.items() if not k.startswith(WINDOW_KEYS)}))
        if self.windows == "clusters":  # records_out counts windows; files_out the files they come from
            metrics["files_out"] = int(self.dropped["files_out"])
            metrics.update({k: int(v) for k, v in sorted(self.dropped.items()) if k.startswith(WINDOW_KEYS)})
        for lang in sorted(self.language_in):
            metrics[f"language.{lang}.in"] = self.language_in[lang]
            metrics[f"language.{lang}.out"] = language_out[lang]
        return metrics


def filter_records(records: Iterable[dict[str, Any]], config: Filter, *, progress: bool = False) -> FilterResult:
    """Keep the records that pass every filter, in input order (in memory: the stage streams
    through nep.util.batches instead); count the others by reason and language."""
    from tqdm import tqdm

    from nep.util.console import bars

    result = FilterResult(kept=[], windows=config.windows)
    stream = tqdm(records, desc="filter", unit="rec", disable=bars(progress))
    result.kept = list(filter_stream(stream, config, result.dropped, result.language_in))
    return result


# ------------------------------------------------------------------ the stage: parallel, streaming

# A worker's share: consecutive records of one file, up to this many or this many bytes.
TASK_RECORDS = 64
TASK_BYTES = 4 << 20


def dump_line(record: dict[str, Any]) -> bytes | None:
    """One JSONL line (orjson; json for what orjson cannot write, e.g. a 30-digit integer), or None
    when no JSON writer can hold the record."""
    import orjson

    try:
        return orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE)
    except (orjson.JSONEncodeError, TypeError):
        import json

        try:
            return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
        except (ValueError, RecursionError, UnicodeEncodeError):
            return None


def _survivors(records: Iterable[dict[str, Any]], config: Filter, dropped: Counter, language_in: Counter | None,
               threads: int) -> tuple[list[bytes], Counter]:
    lines: list[bytes] = []
    language_out: Counter = Counter()
    for r in filter_stream(records, config, dropped, language_in, threads):
        line = dump_line(r)
        if line is None:
            dropped["unserializable"] += 1
            continue
        lines.append(line)
        language_out[r["lang"]] += 1
    return lines, language_out


def filter_rows(task: tuple[str, list[tuple[int, int]], Filter, int]) -> tuple[list[bytes], Counter, Counter]:
    """Worker: read the indexed records at (offset, length) in a file, filter them; return the
    survivors' lines, drops by reason and survivors by language."""

    path, ranges, config, threads = task
    dropped: Counter = Counter()

    def records() -> Iterator[dict[str, Any]]:
        for data in read_ranges(path, ranges):
            try:
                obj, reason = parse_line(data)
            except UnicodeDecodeError:
                obj, reason = None, "source_changed"
            if reason is None and not isinstance(obj, dict):
                reason = "source_changed"  # the index points elsewhere than at a record
            if reason:
                dropped[reason] += 1
                continue
            record = checked_record(obj, None, dropped)
            if record is not None:
                yield record

    lines, language_out = _survivors(records(), config, dropped, None, threads)
    return lines, dropped, language_out


def filter_block(task: tuple[str, int, int, Filter, int]) -> tuple[list[bytes], Counter, Counter, Counter]:
    """Worker: filter the records of one block of a JSONL file of records (all fields kept);
    return survivors' lines, drops (bad lines and invalid records included), records by language
    in and out."""

    path, start, end, config, threads = task
    with open(path, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    dropped: Counter = Counter()
    language_in: Counter = Counter()

    def objects() -> Iterator[dict[str, Any]]:
        for lineno, offset, line in split_lines(data, start):
            if not line.strip():
                continue
            obj, reason = parse_object(path, lineno, offset, line)
            if reason:
                dropped[reason] += 1
            else:
                yield obj

    lines, language_out = _survivors(valid_records(objects(), dropped), config, dropped, language_in, threads)
    return lines, dropped, language_in, language_out


def run_filter(input_path: str | Path, output_path: str | Path, config: Filter, workers: int = 0) -> dict[str, int]:
    """Filter the records of ingest's output directory (its index: records too large for
    `max_chars` are counted without being read) or of a JSONL file of records; write the survivors
    in input order to `output_path`; return the metrics. Work is spread over `workers` processes
    (0 = every usable core) in bounded batches: memory does not grow with the input."""

    input_path, workers = Path(input_path), worker_count(workers)
    threads = 1 if workers > 1 else 2
    if workers > 1 and config.max_tokens:

        get_encoding(config.encoding)  # once, before the workers fork, rather than in each of them
    result = FilterResult(kept=[], language_out=Counter(), windows=config.windows)

    def collect(results) -> Iterator[bytes]:
        for lines, dropped, *languages in results:
            result.dropped.update(dropped)
            if len(languages) == 2:
                result.language_in.update(languages[0])
            result.language_out.update(languages[-1])
            yield from lines

    if input_path.is_dir():
        tasks = _index_tasks(input_path, config, threads, result)
        write_lines(output_path, collect(ordered_map(filter_rows, tasks, workers)))
    else:
        if not input_path.is_file():

            raise NepError(f"{input_path}: file not found")
        tasks = ((str(input_path), s, e, config, threads) for s, e in line_blocks(input_path))
        write_lines(output_path, collect(ordered_map(filter_block, tasks, workers)))
    metrics = result.metrics()
    invalid = sum(v for k, v in result.dropped.items() if k not in STRUCTURAL_REASONS and not k.startswith(WINDOW_KEYS))
    if not input_path.is_dir():  # bad lines and invalid records are records in, too
        metrics["records_in"] += invalid
    return metrics


STRUCTURAL_REASONS = {"too_many_chars", "no_change", "too_few_chunks", "edit_type", "chunk_too_long",
                      "window_too_long", "too_many_tokens", "special_token", "unserializable", "no_window"}
# Counter keys of `windows: clusters` that are counts, not drops of a record (FilterResult.metrics)
WINDOW_KEYS = ("windows.", "chunks.", "files_out")


def _index_tasks(in_dir: Path, config: Filter, threads: int, result: FilterResult) -> Iterator[tuple]:
    """Worker tasks from ingest's index, once it is found whole; records over `max_chars` are
    counted here, unread."""
    from nep.util.paths import cache_root

    files, rows = whole_index(in_dir, stamps=cache_root() / "ingest" / "stamps.json")  # NepError unless whole
    paths = [local_path(f["path"]) for f in files]
    batch: list[tuple[int, int]] = []
    batch_file, batch_bytes = -1, 0
    for file, offset, length, _line, lang, chars in rows:
        result.language_in[lang] += 1
        if config.max_chars and chars > config.max_chars:
            result.dropped["too_many_chars"] += 1
            continue
        if batch and (file != batch_file or len(batch) >= TASK_RECORDS or batch_bytes >= TASK_BYTES):
            yield paths[batch_file], batch, config, threads
            batch, batch_bytes = [], 0
        batch.append((offset, length))
        batch_file, batch_bytes = file, batch_bytes + length
    if batch:
        yield paths[batch_file], batch, config, threads
