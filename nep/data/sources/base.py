"""The interface of a commit record source (`ingest.source`), their registry, and what they share.

A source is one module holding a `Source` subclass, registered by one line in SOURCES below; its
params are the `ingest.<name>:` section (nep/config/schema.py). Ingest, its stage and preflight ask
the source object, never its name:

    source = source_for(cfg)            # cfg: the `ingest:` section (nep.config.schema.Ingest)
    source.prepare()                    # build what must exist before reading (git: stdlib history)
    source.state()                      # cheap: what the records depend on beyond the params
    source.files()                      # JSONL files indexed where they lie: [(name, local path)]
    source.records(drops, progress)     # or records materialized into data/ingest/commits.jsonl
    source.check()                      # preflight rows: (status, what, param, note)

Every source yields record dicts in the CommitPackFT schema (nep.core.records) in a deterministic
order and counts what it drops, by reason, in a `Counter` the caller passes in. Here also: the
languages by file extension, the record check and the duplicate filter.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar

from nep.config.schema import Ingest, default
from nep.core.records import RecordError, validate_commit
from nep.util.registry import Registry

# name (ingest.source) -> the module:class of its Source; one line per source.
SOURCES = Registry("ingest.source", {
    "git": "nep.data.sources.git:GitSource",
    "jsonl": "nep.data.sources.files:JsonlSource",
    "hf": "nep.data.sources.hub:HfSource",
    "patches": "nep.data.sources.patches:PatchesSource",
})

Row = tuple[str, str, str, str]  # a preflight row: (pass | warn | fail | skip, what, param, note)


class Source:
    """A kind of commit record source, built from the `ingest:` section. Override what applies:
    a file source returns `files()` (indexed in place, never copied), any other yields `records()`."""

    name: ClassVar[str]  # its ingest.source name, and its params section ingest.<name>
    require_records: ClassVar[bool] = True  # a file without one valid record is an error
    filters_languages: ClassVar[bool] = True  # its records are checked against ingest.languages
    empty_hint: ClassVar[str] = "records in another schema or languages outside ingest.languages"

    def __init__(self, cfg: Ingest):
        self.cfg = cfg
        self.params = getattr(cfg, self.name)  # the ingest.<name> section

    @property
    def param(self) -> str:
        return f"ingest.{self.name}"

    def describe(self) -> str:
        """What will be read, for the stage's banner."""
        return self.name

    def prepare(self) -> None:
        """Build whatever must exist before the source is read (nothing by default)."""

    def state(self) -> dict[str, Any]:
        """Cheap facts (no record read) that the records depend on beyond the params, added to
        data/ingest/sources.json's manifest: equal manifests mean equal records."""
        return {}

    def files(self) -> list[tuple[str, str]]:
        """(name recorded in sources.json, local path) of JSONL/Parquet files to index in place."""
        return []

    def records(self, drops: Counter, progress: bool = True) -> Iterator[dict[str, Any]]:
        """Checked records to write to data/ingest/commits.jsonl (a source with `files` yields none)."""
        return iter(())

    @property
    def cap_per_language(self) -> int:
        """Records kept per language (0 = all)."""
        return 0

    def check(self) -> Iterator[Row]:
        """Preflight: what this source needs, checked without reading it."""
        return iter(())

    def hub_dataset(self) -> tuple[str, str, list[str]] | None:
        """(dataset id, revision, files) on the hub this source needs, for preflight's hub check."""
        return None


def source_for(cfg: Ingest) -> Source:
    """The source `cfg.source` names, built from the `ingest:` section."""
    return SOURCES.get(cfg.source)(cfg)

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
DEFAULT_LANGUAGES = tuple(default(Ingest, "languages"))  # ingest.languages' default


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
