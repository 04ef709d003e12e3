"""Local git repositories: each non-merge commit x each modified source file is one record."""

from __future__ import annotations

import os
import subprocess
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from nep.config.schema import IngestGit, default
from nep.data.sources.base import DEFAULT_LANGUAGES, Row, Source, checked_record, dedupe, language_of
from nep.util.errors import NepError


def _git(repo: Path, *args: str, input: bytes | None = None) -> bytes:
    result = subprocess.run(["git", "-C", str(repo), *args], input=input, capture_output=True)
    if result.returncode != 0:
        raise NepError(f"{repo}: git {' '.join(args)} failed: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout


def project_name(repo: Path) -> str | None:
    """The name in pyproject.toml's [project] table when `repo` is a nep project's root (dvc.yaml
    and params.yaml beside it: the offline default mines this repository itself), else None."""
    import tomllib

    root = repo.resolve()
    if not all((root / f).is_file() for f in ("dvc.yaml", "params.yaml", "pyproject.toml")):
        return None
    try:
        name = tomllib.loads((root / "pyproject.toml").read_text(encoding="utf-8")).get("project", {}).get("name")
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError):
        return None
    return name if isinstance(name, str) and name else None


def repository_name(repo: Path) -> str:
    """A name for `repo` that is the same in every clone: a nep project's own name (pyproject.toml:
    every clone, fork or mirror of this repository, whatever its remote or folder is called, mines
    the same records), else `owner/name` from its `origin` remote (`https://host/owner/name.git`,
    `git@host:owner/name.git`), the last part of a local origin path, or the directory name when
    there is no origin."""
    if name := project_name(repo):
        return name
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
    pin (`ingest.git.pins`, keyed by the repository as listed; "./" pins "."), else HEAD; any other
    `rev` (HEAD, a branch, a range) applies to every repository. A pin naming no repository is a
    one-line NepError naming it (it would leave its repository unpinned), except the offline
    default's own pin of ".", inert when "." is not mined."""
    by_repo = pin_keys(repos, pins or {})
    if rev:
        return [(rev, "ingest.git.rev") for _ in repos]
    return [(pins[by_repo[r]], f"ingest.git.pins[{by_repo[r]!r}]") if r in by_repo else ("HEAD", "ingest.git.rev")
            for r in repos]


def _same_repo(a: str, b: str) -> bool:
    return os.path.normpath(a) == os.path.normpath(b) or os.path.realpath(a) == os.path.realpath(b)


def pin_keys(repos: list[str], pins: dict[str, str]) -> dict[str, str]:
    """The key of `pins` that pins each repository of `repos` (matched by normalised path); a
    NepError naming ingest.git.pins for a key that pins none of them, or two keys for one."""
    from nep.config.schema import IngestGit

    default = IngestGit().pins
    by_repo: dict[str, str] = {}
    for key in pins:
        matched = [r for r in repos if _same_repo(key, r)]
        if not matched:
            if default.get(key) == pins[key]:
                continue  # the offline default's pin of this project, while it is not mined
            raise NepError(f"{key!r} names no repository of ingest.git.repos {repos}", param="ingest.git.pins",
                           hint="key each pin by a repository as listed in ingest.git.repos")
        for repo in matched:
            if repo in by_repo:
                raise NepError(f"{by_repo[repo]!r} and {key!r} both pin {repo!r}", param="ingest.git.pins",
                               hint="keep one of them")
            by_repo[repo] = key
    return by_repo


def _is_shallow(repo: Path) -> bool:
    return _git(repo, "rev-parse", "--is-shallow-repository").strip() == b"true"


def check_revision(repo: Path, rev: str, param: str) -> list[str]:
    """The commit shas `rev` resolves to in `repo` (a range gives two, the excluded one as ^sha);
    a one-line NepError naming the param to change and how when `repo` does not have them (an
    empty repository names ingest.git.repos), or when a pinned commit's history is cut by a
    shallow clone."""
    shallow = _is_shallow(repo)
    fetch = "git fetch --unshallow" if repo.resolve() == Path.cwd().resolve() else f"git -C {repo} fetch --unshallow"
    if rev == "HEAD":  # HEAD already: name what changes something
        fix = f"check out a branch in {repo}, or set ingest.git.rev to one of its revisions"
    else:
        fix = "-S ingest.git.rev=HEAD to mine the current history"
    if shallow:
        fix = f"run `{fetch}`, or {fix}"
    result = subprocess.run(["git", "-C", str(repo), "rev-parse", rev, "--"], capture_output=True, text=True)
    shas = result.stdout.split()[:-1] if result.returncode == 0 else []  # the last line is "--"
    missing = rev if result.returncode != 0 else next(
        (s.lstrip("^") for s in shas if not _has_commit(repo, s.lstrip("^"))), None)
    if missing is not None:
        if not _git(repo, "rev-list", "-n", "1", "--all").strip():
            raise NepError(f"{repo} is an empty repository (no commit to mine)", param="ingest.git.repos",
                           hint="commit to it, or remove it from ingest.git.repos")
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
    max_file_bytes: int = default(IngestGit, "max_file_bytes"),
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

    from nep.util.console import bars

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
                                                    disable=bars(progress)):
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


class GitSource(Source):
    """`ingest.source: git`: local repositories at their pins or `ingest.git.rev` (see `git_records`)."""

    name = "git"
    empty_hint = ("a shallow clone (git fetch --unshallow), a rev range without modified source files, "
                  "or ingest.languages not matching the repository")

    def mined(self) -> dict[str, Any]:
        """The git params that decide what is mined (stdlib_root only builds a repository first)."""
        return {k: v for k, v in self.params.model_dump().items() if k != "stdlib_root"}

    def describe(self) -> str:
        p = self.params
        return ", ".join(f"{r}@{rev[:12]}" for r, (rev, _) in zip(p.repos, revisions(p.repos, p.rev, p.pins)))

    def prepare(self) -> None:
        """With `ingest.git.stdlib_root`, a repository of `ingest.git.repos` that does not exist is
        first built from the standard libraries installed there (nep.data.stdlib_history)."""
        if self.params.stdlib_root:
            from nep.data.stdlib_history import ensure_history, resolve_root

            for repo in self.params.repos:
                ensure_history(Path(repo), resolve_root(self.params.stdlib_root))

    def state(self) -> dict[str, Any]:
        git = self.mined()
        return {"git": git_state(git["repos"], git["rev"], git.get("pins"))}

    def records(self, drops: Counter, progress: bool = True) -> Iterator[dict[str, Any]]:
        return dedupe(git_records(languages=self.cfg.languages, drops=drops, progress=progress, **self.mined()), drops)

    def check(self) -> Iterator[Row]:
        """Each repository to mine has its revision (a pin, or ingest.git.rev), and the whole of its
        history when pinned (not a shallow clone); every pin names a repository."""
        p = self.params
        try:
            revs = revisions(p.repos, p.rev, p.pins)
        except NepError as e:
            yield "fail", "git pins", e.param or "ingest.git.pins", f"{e.message}: {e.hint}"
            return
        for repo, (rev, param) in zip(p.repos, revs):
            what = f"git {repo} at {rev[:12]}"
            try:
                check_revision(Path(repo), rev, param)
            except NepError as e:
                yield "fail", what, e.param or param, f"{e.message}: {e.hint}"
            except OSError as e:
                yield "fail", what, "ingest.git.repos", f"{type(e).__name__}: {e}"
            else:
                yield "pass", what, param, "found"

