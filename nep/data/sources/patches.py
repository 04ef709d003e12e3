"""`ingest.source: patches`: commits as `git format-patch` files, no repository needed.

A patch carries whole files when it was made with enough context to cover them:

    git format-patch --unified=1000000 -o patches/ v1.0..HEAD     # or --root for every commit

Each file change whose one hunk covers the whole file becomes a record (old and new contents
rebuilt from it), checked against the blob ids of the patch's `index` line, so a patch cut short
by too little context (the default 3 lines) is dropped and counted (`dropped.partial_context`),
never guessed. `ingest.patches.paths` lists patch files or directories (their `*.patch` files, by
name); `repos` is the name of the directory holding the patch, `timestamp` the patch's Date.
"""

from __future__ import annotations

import email
import email.policy
import email.utils
import hashlib
import re
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import xxhash

from nep.data.sources.base import Source, checked_record, dedupe, language_of
from nep.util.errors import NepError

_MBOX_FROM = re.compile(r"^From ([0-9a-f]{40}) ", re.M)
_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
_PATCH_TAG = re.compile(r"^\[PATCH[^\]]*\]\s*")


def patch_files(paths: list[str]) -> list[Path]:
    """The patch files `paths` names: files as given, directories' `*.patch` by name."""
    if not paths:
        raise NepError("empty: list the patch files or directories to read", param="ingest.patches.paths")
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(sorted(p.glob("*.patch")))
        elif p.is_file():
            out.append(p)
        else:
            raise NepError(f"{p}: no such file or directory", param="ingest.patches.paths")
    return out


def _blob_id(text: str) -> str:
    data = text.encode("utf-8", "surrogateescape")
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _rebuild(lines: list[str]) -> tuple[str, str] | None:
    """(old, new) from the lines of one diff section after its `+++` line, when it is one hunk
    starting at line 1; None otherwise."""
    if not lines or not (m := _HUNK.match(lines[0])) or any(_HUNK.match(x) for x in lines[1:]):
        return None
    if int(m.group(1)) > 1 or int(m.group(3)) > 1:
        return None
    old: list[str] = []
    new: list[str] = []
    last = " "
    for line in lines[1:]:
        if line.startswith("\\"):  # "\ No newline at end of file": the previous line has none
            for side, kind in ((old, "-"), (new, "+")):
                if last in (" ", kind) and side:
                    side[-1] = side[-1].removesuffix("\n")
            continue
        if not line:  # the blank line closing the section
            continue
        last, text = line[:1], line[1:] + "\n"
        if last in (" ", "-"):
            old.append(text)
        if last in (" ", "+"):
            new.append(text)
    return "".join(old), "".join(new)


def _sections(diff: str) -> Iterator[list[str]]:
    section: list[str] = []
    for line in diff.split("\n"):
        if line.startswith("diff --git "):
            if section:
                yield section
            section = [line]
        elif line == "-- ":  # the signature after the last diff
            break
        elif section:
            section.append(line)
    if section:
        yield section


def _file_change(section: list[str], drops: Counter) -> dict[str, str] | None:
    """old_file, new_file, old_contents, new_contents of one `diff --git` section, or None after
    counting why not."""
    header: dict[str, str] = {}
    _, _, new_name = section[0].rpartition(" b/")  # "diff --git a/<old> b/<new>": the language first, as git's
    if language_of(new_name) is None:
        drops["not_source"] += 1
        return None
    for i, line in enumerate(section):
        if line.startswith(("new file mode", "deleted file mode")):
            drops["added_file" if line.startswith("new") else "deleted_file"] += 1
            return None
        if line.startswith(("Binary files ", "GIT binary patch")):
            drops["binary"] += 1
            return None
        if line.startswith("index "):
            header["index"] = line.split()[1]
        if line.startswith("--- ") and i + 1 < len(section) and section[i + 1].startswith("+++ "):
            old_path, new_path = line[4:], section[i + 1][4:]
            if not (old_path.startswith("a/") and new_path.startswith("b/")):
                drops["unsupported_path"] += 1  # quoted (unusual characters) or --no-prefix
                return None
            rebuilt = _rebuild(section[i + 2:])
            old_id, _, new_id = header.get("index", "").partition("..")
            if rebuilt is None or not old_id or not _blob_id(rebuilt[0]).startswith(old_id) or not _blob_id(
                    rebuilt[1]).startswith(new_id):
                drops["partial_context"] += 1
                return None
            return {"old_file": old_path[2:], "new_file": new_path[2:], "old_contents": rebuilt[0],
                    "new_contents": rebuilt[1]}
    drops["unchanged"] += 1  # a pure rename or mode change: no hunk
    return None


def patch_records(path: Path, *, languages: list[str], drops: Counter) -> Iterator[dict[str, Any]]:
    """Checked records of one `git format-patch` file (one or more patches, mbox style)."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise NepError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})", param="ingest.patches.paths") from e
    starts = [m.start() for m in _MBOX_FROM.finditer(text)]
    if not starts:
        raise NepError(f"{path}: not a `git format-patch` file (no 'From <sha>' line)", param="ingest.patches.paths")
    for start, end in zip(starts, [*starts[1:], len(text)]):
        patch = text[start:end]
        sha = patch[5:45]
        head, _, rest = patch.partition("\n\n")
        message = email.message_from_string(head.split("\n", 1)[1] + "\n\n", policy=email.policy.default)
        subject = _PATCH_TAG.sub("", " ".join(str(message["Subject"] or "").split()))
        rest = "\n" + rest
        at = rest.find("\ndiff --git ")
        body, diff = (rest, "") if at < 0 else (rest[:at], rest[at + 1:])
        body = body.partition("\n---\n")[0]  # the diffstat follows the message after "---"
        timestamp = int(email.utils.parsedate_to_datetime(message["Date"]).timestamp()) if message["Date"] else None
        for section in _sections(diff):
            change = _file_change(section, drops)
            if change is None:
                continue
            lang = language_of(change["new_file"])
            if lang is None:  # a rename out of the source languages
                drops["not_source"] += 1
                continue
            obj = {"commit": sha, **change, "subject": subject,
                   "message": f"{subject}\n\n{body.strip()}".strip(), "lang": lang,
                   "repos": path.resolve().parent.name, "timestamp": timestamp}
            if timestamp is None:
                del obj["timestamp"]
            if (record := checked_record(obj, languages, drops)) is not None:
                yield record


class PatchesSource(Source):
    """`git format-patch` files made with whole-file context (see the module docstring)."""

    name = "patches"
    empty_hint = ("patches made with the default 3 lines of context (make them with "
                  "`git format-patch --unified=1000000`), or languages outside ingest.languages")

    def describe(self) -> str:
        return ", ".join(self.params.paths) or "(no paths)"

    def state(self) -> dict[str, Any]:
        """Every patch file with its content hash: a changed patch re-ingests."""
        return {"patches": [{"path": str(p), "xxh3": xxhash.xxh3_128_hexdigest(p.read_bytes())}
                            for p in patch_files(self.params.paths)]}

    def records(self, drops: Counter, progress: bool = True) -> Iterator[dict[str, Any]]:
        languages = list(self.cfg.languages)
        paths = patch_files(self.params.paths)
        yield from dedupe((r for p in paths for r in patch_records(p, languages=languages, drops=drops)), drops)

    def check(self) -> Iterator[tuple[str, str, str, str]]:
        try:
            files = patch_files(self.params.paths)
        except NepError as e:
            yield "fail", "patch files", "ingest.patches.paths", e.message
            return
        yield ("pass" if files else "fail"), "patch files", "ingest.patches.paths", f"{len(files)} found"
