"""Commit record sources for the ingest stage: local git repositories, JSONL/Parquet files, and
CommitPackFT through `datasets`.

Every source yields record dicts in the CommitPackFT schema (nep.core.records) in a deterministic order
and counts what it drops, by reason, in a `Counter` the caller passes in.
"""

from __future__ import annotations

import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nep.core.records import RecordError, validate_commit
from nep.util.errors import NepError
from nep.util.jsonl import read_jsonl

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
# CommitPackFT on the hub: one JSONL file per language config (lowercase language name).
COMMITPACKFT_FILES = "data/{config}/data.jsonl"


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


# ---------------------------------------------------------------------------------------- jsonl


def read_records_file(path: str | Path, drops: Counter) -> Iterator[dict[str, Any]]:
    """Raw objects of a JSONL or Parquet file (malformed JSON lines are counted in `drops`)."""
    path = Path(path)
    if not path.is_file():
        raise NepError(f"{path}: file not found")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            table = pq.ParquetFile(path)
        except Exception as e:  # pyarrow raises several types for a corrupt file
            raise NepError(f"{path}: not a readable Parquet file ({e})") from e
        for batch in table.iter_batches():
            yield from batch.to_pylist()
        return
    try:
        yield from read_jsonl(path, drops)
    except UnicodeDecodeError as e:
        raise NepError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from e


def jsonl_records(paths: list[str], *, languages: Iterable[str] | None = None, drops: Counter) -> Iterator[dict[str, Any]]:
    """Records of local JSONL/Parquet files in the CommitPackFT schema, in file then line order.
    A file without a single valid record is an error naming it."""
    if not paths:
        raise NepError("ingest.jsonl.paths is empty: list the JSONL/Parquet files to read")
    for path in paths:
        kept = 0
        for obj in read_records_file(path, drops):
            record = checked_record(obj, languages, drops)
            if record is not None:
                kept += 1
                yield record
        if not kept:
            raise NepError(f"{path}: no valid commit record (empty file, or every line malformed/filtered)")


# ------------------------------------------------------------------------------------------- hf


def hf_files(*, dataset: str, revision: str, languages: Iterable[str], files: str = COMMITPACKFT_FILES,
             split: str = "train") -> list[tuple[str, str]]:
    """(name, local path) of each language config's data file, in `languages` order.

    `dataset` is a hub id, read at `revision` (downloaded once into the Hugging Face cache; a commit
    sha is served from the cache without network), or a local directory with the same layout; the
    name is `hf://datasets/<id>@<revision>/<file>` or the local path."""
    if split != "train":
        raise NepError(f"ingest.hf.split: CommitPackFT's data files hold only the 'train' split, not {split!r}")
    local = Path(dataset)
    out = []
    for lang in languages:
        config = lang.lower()
        file = files.format(config=config)
        if local.is_dir():
            path = local / file
            if not path.is_file():
                raise NepError(f"{dataset}: no data for language config '{config}' ({path})")
            out.append((str(path), str(path)))
            continue
        out.append((f"hf://datasets/{dataset}@{revision}/{file}", hub_file(dataset, revision, file, config)))
    return out


HUB_PROBE_TIMEOUT_S = 5.0  # one request that says whether the hub answers at all, before any download




def hub_unreachable(endpoint: str | None = None, timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why the hub does not answer (None when it does): one request with a short timeout and no
    retries, so an offline machine learns it in seconds rather than after a download's retries."""
    from huggingface_hub import constants, get_session

    if constants.HF_HUB_OFFLINE:
        return "HF_HUB_OFFLINE is set"
    url = (endpoint or constants.ENDPOINT).rstrip("/")
    try:
        get_session().head(f"{url}/api/datasets", timeout=timeout)
    except Exception as e:  # noqa: BLE001 - any transport failure means unreachable
        return f"{url} does not answer ({type(e).__name__})"
    return None


def hub_file(dataset: str, revision: str, file: str, config: str = "") -> str:
    """The local copy of one file of a hub dataset (downloaded on first use; a cached copy is used
    without asking the hub). An unreachable hub is one line saying so, after one quick probe."""
    from huggingface_hub import hf_hub_download, try_to_load_from_cache
    from huggingface_hub.errors import LocalEntryNotFoundError, RemoteEntryNotFoundError

    cached = try_to_load_from_cache(dataset, file, revision=revision, repo_type="dataset")
    if isinstance(cached, str):
        return cached
    why = hub_unreachable()
    if why:
        raise NepError(
            f"the hub is unreachable ({why}) and {dataset}@{revision[:12]}/{file} is not cached",
            param="ingest.hf.dataset",
            hint="connect and run once to cache it, or point ingest.hf.dataset at a local copy")
    try:
        return hf_hub_download(dataset, file, repo_type="dataset", revision=revision)
    except RemoteEntryNotFoundError as e:
        raise NepError(f"{dataset}: no data for language config '{config}' ({file})") from e
    except LocalEntryNotFoundError as e:  # the hub stopped answering after the probe
        raise NepError(f"the hub is unreachable and {dataset}@{revision[:12]}/{file} is not cached",
                                  param="ingest.hf.dataset",
                                  hint="connect and run once to cache it, or point ingest.hf.dataset at a local copy") from e
    except Exception as e:  # no such dataset or revision
        raise NepError(f"ingest.hf: cannot fetch {file} of {dataset}@{revision} ({type(e).__name__}: {e}); "
                         "check ingest.hf.dataset/revision, or point ingest.hf.dataset at a local copy") from e


def local_path(name: str) -> str:
    """The local file behind a name that `hf_files` or the jsonl source recorded."""
    if not name.startswith("hf://datasets/"):
        return name
    dataset, _, rest = name.removeprefix("hf://datasets/").partition("@")
    revision, _, file = rest.partition("/")
    return hub_file(dataset, revision, file)


def hf_records(
    *,
    dataset: str,
    revision: str,
    languages: Iterable[str],
    split: str = "train",
    files: str = COMMITPACKFT_FILES,
    max_records_per_language: int = 0,
    drops: Counter,
) -> Iterator[dict[str, Any]]:
    """CommitPackFT records, one language config after the other (see `hf_files`)."""
    for _, path in hf_files(dataset=dataset, revision=revision, languages=languages, files=files, split=split):
        kept = 0
        for obj in read_records_file(path, drops):
            if max_records_per_language and kept >= max_records_per_language:
                break
            record = checked_record(obj, None, drops)
            if record is not None:
                kept += 1
                yield record


# ------------------------------------------------------------------------------------------ git



def _git(repo: Path, *args: str, input: bytes | None = None) -> bytes:
    result = subprocess.run(["git", "-C", str(repo), *args], input=input, capture_output=True)
    if result.returncode != 0:
        raise NepError(f"{repo}: git {' '.join(args)} failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def repository_name(repo: Path) -> str:
    """A name for `repo` that is the same in every clone: `owner/name` from its `origin` remote
    (`https://host/owner/name.git`, `git@host:owner/name.git`), the last part of a local origin
    path, or the directory name when there is no origin."""
    result = subprocess.run(["git", "-C", str(repo), "config", "--get", "remote.origin.url"],
                            capture_output=True, text=True)
    url = result.stdout.strip().rstrip("/").removesuffix(".git").rstrip("/")
    if result.returncode != 0 or not url:
        return repo.resolve().name
    if url.startswith("file://") or "://" not in url and ":" not in url.split("/", 1)[0]:
        parts = url.split("/")[-1:]  # a local path: its last part, like the directory name
    elif "://" in url:
        parts = url.split("://", 1)[1].split("/")[1:]  # drop the host
    else:  # scp-like: git@host:owner/name
        parts = url.split(":", 1)[1].split("/")
    return "/".join(p for p in parts[-2:] if p) or repo.resolve().name


class BlobReader:
    """Reads blobs through one long-running `git cat-file --batch`."""

    def __init__(self, repo: Path):
        self.proc = subprocess.Popen(
            ["git", "-C", str(repo), "cat-file", "--batch"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
        )

    def read(self, sha: str) -> bytes:
        assert self.proc.stdin and self.proc.stdout
        self.proc.stdin.write(sha.encode() + b"\n")
        self.proc.stdin.flush()
        header = self.proc.stdout.readline().split()
        if len(header) != 3:
            raise NepError(f"blob {sha} is missing ({b' '.join(header).decode(errors='replace')})")
        data = self.proc.stdout.read(int(header[2]))
        self.proc.stdout.read(1)  # the newline after the contents
        return data

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        self.proc.wait()


def _commits(repo: Path, rev: str, max_commits: int, paths: tuple[str, ...] = ()) -> list[tuple[str, int, str, str]]:
    """Non-merge commits of `rev` (touching `paths` when given), newest first: (sha, unix time,
    subject, message). Fields are split at newlines, which a subject (%s) never holds."""
    args = ["log", "-z", "--no-merges", "--format=%H%n%ct%n%s%n%B"]
    if max_commits:
        args.append(f"--max-count={max_commits}")
    out = _git(repo, *args, rev, "--", *paths).decode("utf-8", errors="replace")
    commits = []
    for entry in out.split("\0"):
        if not entry.strip():
            continue
        sha, time, subject, message = entry.lstrip("\n").split("\n", 3)
        commits.append((sha, int(time), subject, message.strip()))
    return commits


def _changes(repo: Path, shas: list[str], paths: tuple[str, ...] = ()) -> dict[str, list[tuple[str, str, str, str, str, str, str]]]:
    """Per commit, its file changes against its parent: (status, old mode, new mode, old blob,
    new blob, old path, new path), renames detected, limited to `paths` when given. Root commits
    have none."""
    out = _git(repo, "diff-tree", "--stdin", "-z", "-r", "-M", "--", *paths,
               input="\n".join(shas).encode() + b"\n")
    tokens = out.split(b"\0")
    changes: dict[str, list] = {sha: [] for sha in shas}
    current: list | None = None
    i = 0
    while i < len(tokens):
        token = tokens[i].decode("utf-8", errors="surrogateescape")
        i += 1
        if not token:
            continue
        if not token.startswith(":"):
            current = changes.setdefault(token.strip(), [])
            continue
        old_mode, new_mode, old_blob, new_blob, status = token[1:].split(" ")
        old_path = tokens[i].decode("utf-8", errors="surrogateescape")
        i += 1
        new_path = old_path
        if status[0] in "RC":
            new_path = tokens[i].decode("utf-8", errors="surrogateescape")
            i += 1
        assert current is not None
        current.append((status[0], old_mode, new_mode, old_blob, new_blob, old_path, new_path))
    return changes


def _is_utf8(path: str) -> bool:
    try:
        path.encode("utf-8")
        return True
    except UnicodeEncodeError:  # undecodable bytes kept as surrogates
        return False


def _decode(data: bytes) -> tuple[str | None, str | None]:
    """(text, None) or (None, drop reason) for a blob."""
    if b"\0" in data:
        return None, "binary"
    try:
        return data.decode("utf-8"), None
    except UnicodeDecodeError:
        return None, "non_utf8"


def repository_prefix(repo: Path) -> str:
    """The path of `repo` inside its enclosing git repository ("" at its top level); a clear
    error naming it when it is in no repository."""
    _git(repo, "rev-parse", "--git-dir")
    return _git(repo, "rev-parse", "--show-prefix").decode("utf-8", errors="surrogateescape").strip()


def repository_names(repos: list[str]) -> list[str]:
    """The name of each repository (see `repository_name`; a subdirectory is `<name>/<path>`; the
    path as given when two share a name)."""
    names = []
    for arg in repos:
        repo = Path(arg)
        if not repo.exists():
            raise NepError(f"{arg}: repository not found")
        prefix = repository_prefix(repo).rstrip("/")
        root = Path(_git(repo, "rev-parse", "--show-toplevel").decode("utf-8", errors="surrogateescape").strip())
        names.append(f"{repository_name(root)}/{prefix}" if prefix else repository_name(repo))
    return [arg if names.count(name) > 1 else name for arg, name in zip(repos, names)]




def revisions(repos: list[str], rev: str = "", pins: dict[str, str] | None = None) -> list[tuple[str, str]]:
    """(revision, param that sets it) of each repository. `rev` "" (the default): a repository's
    pin (`ingest.git.pins`, keyed by the repository as listed), else HEAD; any other `rev` (HEAD, a
    branch, a range) applies to every repository."""
    pins = pins or {}
    if rev:
        return [(rev, "ingest.git.rev") for _ in repos]
    return [(pins[r], f"ingest.git.pins[{r!r}]") if r in pins else ("HEAD", "ingest.git.rev") for r in repos]


def _is_shallow(repo: Path) -> bool:
    return _git(repo, "rev-parse", "--is-shallow-repository").strip() == b"true"


def check_revision(repo: Path, rev: str, param: str) -> list[str]:
    """The commit shas `rev` resolves to in `repo` (a range gives two, the excluded one as ^sha);
    a one-line NepError naming `param` and the fix when `repo` does not have them, or when a
    pinned commit's history is cut by a shallow clone."""
    shallow = _is_shallow(repo)
    unpin = "-S ingest.git.rev=HEAD to mine the current history"
    fetch = "git fetch --unshallow" if repo.resolve() == Path.cwd().resolve() else f"git -C {repo} fetch --unshallow"
    fix = f"run `{fetch}`, or {unpin}" if shallow else unpin
    result = subprocess.run(["git", "-C", str(repo), "rev-parse", rev, "--"], capture_output=True, text=True)
    shas = result.stdout.split()[:-1] if result.returncode == 0 else []  # the last line is "--"
    missing = rev if result.returncode != 0 else next(
        (s.lstrip("^") for s in shas if not _has_commit(repo, s.lstrip("^"))), None)
    if missing is not None:
        where = "this shallow clone of" if shallow else "the history of"
        raise NepError(f"{_short_rev(missing)} is not a revision in {where} {repo}", param=param, hint=fix)
    if shallow and param.startswith("ingest.git.pins"):
        raise NepError(f"{repo} is a shallow clone: its pinned history {_short_rev(rev)} is cut short",
                               param=param, hint=fix)
    return shas


def _has_commit(repo: Path, sha: str) -> bool:
    return subprocess.run(["git", "-C", str(repo), "cat-file", "-e", f"{sha}^{{commit}}"],
                          capture_output=True).returncode == 0


def _short_rev(rev: str) -> str:
    return rev[:12] if len(rev) == 40 and all(c in "0123456789abcdef" for c in rev) else repr(rev)


def git_state(repos: list[str], rev: str, pins: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """What mining `repos` at `rev` (or their pins, see `revisions`) depends on: per repository its
    name, path prefix and the commit shas its revision resolves to (cheap: no history is read).
    Equal states mine equal records. A revision a repository lacks fails here, before any work."""
    if not repos:
        raise NepError("ingest.git.repos is empty: list the repositories to mine")
    state = []
    for arg, name, (repo_rev, param) in zip(repos, repository_names(repos), revisions(repos, rev, pins)):
        repo = Path(arg)
        resolved = check_revision(repo, repo_rev, param)
        state.append({"repo": arg, "name": name, "prefix": repository_prefix(repo), "revs": resolved,
                      "shallow": _is_shallow(repo)})
    return state


def git_records(
    repos: list[str],
    *,
    rev: str = "",
    pins: dict[str, str] | None = None,
    max_commits: int = 0,
    max_file_bytes: int = 1_000_000,
    languages: Iterable[str] = DEFAULT_LANGUAGES,
    drops: Counter,
    progress: bool = True,
) -> Iterator[dict[str, Any]]:
    """Mine local repositories: each non-merge commit × each modified source file → one record.

    Order: repositories as listed, commits newest first (git's order), files by path. A repository
    is named by `repository_name` (its path as given when two share a name), so records and example
    ids are the same in every clone. A subdirectory of a repository mines only the commits and files
    under it (paths stay relative to the repository's top). Added, deleted and non-source files,
    symlinks, submodules, binary, non-UTF-8 and over-`max_file_bytes` blobs are dropped and counted.
    """
    from tqdm import tqdm

    languages = set(languages)
    if not repos:
        raise NepError("ingest.git.repos is empty: list the repositories to mine")
    names = repository_names(repos)
    for repo_arg, name, (repo_rev, param) in zip(repos, names, revisions(repos, rev, pins)):
        repo = Path(repo_arg)
        check_revision(repo, repo_rev, param)
        if _is_shallow(repo):
            drops["shallow_repository"] += 1
        paths = (".",) if repository_prefix(repo) else ()
        commits = _commits(repo, repo_rev, max_commits, paths)
        changes = _changes(repo, [c[0] for c in commits], paths) if commits else {}
        blobs = BlobReader(repo)
        try:
            for sha, time, subject, message in tqdm(commits, desc=f"ingest {name}", unit="commit",
                                                    disable=not progress):
                for status, old_mode, new_mode, old_blob, new_blob, old_path, new_path in changes.get(sha, []):
                    if not (_is_utf8(old_path) and _is_utf8(new_path)):
                        drops["non_utf8_path"] += 1
                        continue
                    lang = language_of(new_path)
                    if lang is None:
                        drops["not_source"] += 1
                        continue
                    if lang not in languages:
                        drops["other_language"] += 1
                        continue
                    if status == "A":
                        drops["added_file"] += 1
                        continue
                    if status == "D":
                        drops["deleted_file"] += 1
                        continue
                    if status not in "MR" or not (old_mode.startswith("100") and new_mode.startswith("100")):
                        drops["not_a_regular_file"] += 1
                        continue
                    if old_blob == new_blob:
                        drops["unchanged"] += 1
                        continue
                    old_data, new_data = blobs.read(old_blob), blobs.read(new_blob)
                    if max(len(old_data), len(new_data)) > max_file_bytes:
                        drops["too_large"] += 1
                        continue
                    (old, old_reason), (new, new_reason) = _decode(old_data), _decode(new_data)
                    if old is None or new is None:
                        drops[old_reason or new_reason] += 1
                        continue
                    obj = {
                        "commit": sha, "old_file": old_path, "new_file": new_path,
                        "old_contents": old, "new_contents": new, "subject": subject,
                        "message": message, "lang": lang, "repos": name, "timestamp": time,
                    }
                    record = checked_record(obj, None, drops)
                    if record is not None:
                        yield record
        finally:
            blobs.close()


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
