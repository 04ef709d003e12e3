"""JSONL and metrics I/O shared by the stages. Bad lines are counted, never silently lost.

Lines are parsed with orjson (json's rules otherwise: a line orjson refuses for a reason json
accepts, such as NaN or a 30-digit integer, is read by json). A UTF-8 byte order mark at the start of
a file is skipped. A line that no JSON reader can hold is a bad line with its own reason:
`lone_surrogate` (an unpaired `\\ud800` escape: not text), `too_deeply_nested` (more than
MAX_DEPTH nested arrays/objects), `number_too_large` (over Python's 4,300-digit limit),
`malformed_json`. Invalid UTF-8 is an error naming the file, line and byte offset. Files are
written atomically: an anonymous temporary file linked into place when complete, so a killed stage
leaves neither a partial file nor a `*.tmp` behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import IO, Any

import orjson

from nep.util.errors import NepError
from nep.util.paths import unwritable

BOM = b"\xef\xbb\xbf"
MAX_DEPTH = 512  # nesting deeper than this is a bad line, not a crash later on



def _too_deep(value: Any, limit: int = MAX_DEPTH) -> bool:
    """Whether arrays/objects nest deeper than `limit` (iterative: a record of strings costs a
    look at each field)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > limit:
            return True
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def parse_line(line: bytes) -> tuple[Any, str | None]:
    """(value, None) for a JSON text, else (None, the reason it is a bad line).
    Raises UnicodeDecodeError (offsets within `line`) when it is not UTF-8."""
    try:
        value = orjson.loads(line)
    except orjson.JSONDecodeError as e:
        message = str(e)
    else:
        if isinstance(value, (dict, list)) and _too_deep(value):
            return None, "too_deeply_nested"
        return value, None
    if "not valid UTF-8" in message:
        line.decode("utf-8")  # raises with the offending byte's offset
    if "surrogate" in message:
        return None, "lone_surrogate"
    try:
        value = json.loads(line)
        if isinstance(value, (dict, list)) and _too_deep(value):
            return None, "too_deeply_nested"
        return value, None
    except RecursionError:
        return None, "too_deeply_nested"
    except json.JSONDecodeError:
        return None, "malformed_json"
    except ValueError:  # int over sys.get_int_max_str_digits()
        return None, "number_too_large"


def iter_lines(path: str | Path, start: int = 0, end: int | None = None) -> Iterator[tuple[int, int, bytes]]:
    """(line number, byte offset, line without its ending) of a file's non-blank lines, read in
    binary from `start` (a line start) to `end`. Lines end at LF, CRLF or a lone CR (universal
    newlines); a leading UTF-8 BOM is skipped. A file that cannot be opened is an NepError naming it."""
    try:
        f = open(path, "rb")  # noqa: SIM115 - closed by the `with` below
    except OSError as e:
        raise NepError(f"{path}: cannot read ({e.strerror or e})") from None
    with f:
        f.seek(start)
        offset = start
        lineno = 0
        for chunk in f:
            for raw in _split_lone_cr(chunk):
                lineno += 1
                if offset == 0 and raw.startswith(BOM):
                    raw, offset = raw[3:], 3
                if end is not None and offset >= end:
                    return
                line = raw[:-2] if raw.endswith(b"\r\n") else raw[:-1] if raw.endswith((b"\n", b"\r")) else raw
                if line.strip():
                    yield lineno, offset, line
                offset += len(raw)


def _split_lone_cr(chunk: bytes) -> Iterator[bytes]:
    """A line read up to LF, split after each CR not followed by LF (old Mac line endings)."""
    if b"\r" not in chunk or not _LONE_CR.search(chunk):
        yield chunk
        return
    pos = 0
    for match in _LONE_CR.finditer(chunk):
        yield chunk[pos : match.end()]
        pos = match.end()
    if pos < len(chunk):
        yield chunk[pos:]


_LONE_CR = re.compile(rb"\r(?!\n)")


def not_utf8(path: str | Path, lineno: int, offset: int, e: UnicodeDecodeError) -> NepError:
    """The error for a line that is not UTF-8: file, line and byte offset of the bad byte."""
    bad = e.object[e.start : e.start + 1].hex()
    return NepError(f"{path}:{lineno}: not UTF-8 text ({e.reason}: byte 0x{bad} at file offset {offset + e.start}, "
                      f"column {e.start + 1})")


def parse_object(path: Path, lineno: int, offset: int, line: bytes) -> tuple[Any, str | None]:
    """One JSONL line parsed as a JSON object: (object, None), or (None/value, drop reason).
    Invalid UTF-8 raises, naming file, line and byte offset."""
    try:
        obj, reason = parse_line(line)
    except UnicodeDecodeError as e:
        raise not_utf8(path, lineno, offset, e) from None
    if reason is None and not isinstance(obj, dict):
        reason = "not_an_object"
    return obj, reason


def read_jsonl(path: str | Path, drops: Counter | None = None) -> Iterator[dict[str, Any]]:
    """Yield the JSON objects of a JSONL file. Bad lines and non-objects are counted in `drops`
    (reason → count) when given, else raise naming file and line. Invalid UTF-8 always raises,
    naming file, line and byte offset."""
    path = Path(path)
    if not path.exists():
        raise NepError(f"{path}: file not found")
    for lineno, offset, line in iter_lines(path):
        obj, reason = parse_object(path, lineno, offset, line)
        if reason:
            if drops is None:
                what = "expected a JSON object" if reason == "not_an_object" else f"bad JSON line ({reason})"
                raise NepError(f"{path}:{lineno}: {what}")
            drops[reason] += 1
            continue
        yield obj


@contextlib.contextmanager
def atomic_file(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a file that appears at `path` (replacing it) only once the block completes.

    On Linux the data goes to an anonymous file (O_TMPFILE) that has no name until it is linked in,
    so a killed process leaves nothing behind; elsewhere a `*.tmp` sibling is removed on failure."""
    path = Path(path)
    binary = "b" in mode
    fd, named = -1, False
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd"):
            with contextlib.suppress(OSError):
                fd = os.open(path.parent, os.O_TMPFILE | os.O_WRONLY, 0o644)
        if fd < 0:
            fd, named = os.open(tmp, os.O_CREAT | os.O_WRONLY | os.O_TRUNC, 0o644), True
    except OSError as e:  # a read-only or full place: one line naming it (and what decides it)
        raise (unwritable(e, e.filename or path) or e) from None
    f = os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": ""}))
    try:
        with f:
            yield f
            f.flush()
            if not named:  # give the anonymous file a name, then move it into place
                with contextlib.suppress(FileNotFoundError):
                    tmp.unlink()
                directory = os.open(path.parent, os.O_RDONLY)
                try:  # linkat(AT_SYMLINK_FOLLOW), which os.link uses only with a dir fd
                    os.link(f"/proc/self/fd/{f.fileno()}", tmp.name, dst_dir_fd=directory, follow_symlinks=True)
                finally:
                    os.close(directory)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise


def write_jsonl(path: str | Path, records: Iterable[dict[str, Any]]) -> int:
    """Write records to `path` atomically; return how many."""
    n = 0
    with atomic_file(path) as f:
        for r in records:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
            n += 1
    return n


def write_lines(path: str | Path, lines: Iterable[bytes]) -> int:
    """Write already serialized JSON lines (bytes, each ending with a newline) atomically; return
    how many."""
    n = 0
    with atomic_file(path, "wb") as f:
        for line in lines:
            f.write(line)
            n += 1
    return n


def write_metrics(path: str | Path, metrics: dict[str, Any]) -> None:
    """Write a flat metrics JSON (sorted keys, stable diffs), atomically."""
    with atomic_file(path) as f:
        f.write(json.dumps(metrics, indent=2, sort_keys=True) + "\n")


def flat_counts(prefix: str, counts: Counter | dict[str, int]) -> dict[str, int]:
    """{"a": 1} → {"prefix.a": 1}, for dropped-by-reason style metrics."""
    return {f"{prefix}.{k}": int(v) for k, v in sorted(counts.items())}


# ---------------------------------------------------------------- integrity: is a file whole?
def file_xxh3(path: str | Path) -> str:
    """The xxh3-128 hex digest of a file's bytes, read in blocks."""
    import xxhash

    digest = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while block := f.read(1 << 24):
            digest.update(block)
    return digest.hexdigest()


def damage(path: str | Path, expected: dict[str, Any], digest: Callable[[str], str] = file_xxh3) -> str | None:
    """Why the file at `path` is not what its producer wrote (`expected`: its `bytes` and `xxh3`
    as recorded, `digest` the hash that computed it), else None: missing, another size, or the
    same size with other bytes (a flipped byte)."""
    path = str(path)
    if not os.path.isfile(path):
        return "missing"
    size = os.path.getsize(path)
    if size != expected["bytes"]:
        return f"{size} bytes, {expected['bytes']} when written"
    if digest(path) != expected["xxh3"]:
        return "its content hash differs from the one written"
    return None
