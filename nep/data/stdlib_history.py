"""A git history of real, human-written Python changes, built offline from the CPython standard
libraries installed side by side (pyenv: `$(pyenv root)/versions/3.X.Y/lib/python3.X`).

    python -m nep.data.stdlib_history DEST            # every installed 3.x, oldest first
    python -m nep.data.stdlib_history DEST --root /usr/local/pyenv/versions --versions 3.10 3.11

Each installed version's `.py` files (site-packages, caches and the interpreter's build files left
out) become one commit of a new repository at DEST, oldest version first, so that the diff between
two commits is what CPython's developers changed between two releases. Every input of a commit is
fixed: file contents and paths, mode 100644, author and committer, dates (one day apart from
2020-01-01, in version order) and message. The same installed versions therefore give the same commit
shas on every machine, and `ingest.git.rev` can pin them. `ingest.source: git` mines the result like
any repository; `split.strategy: time` keeps the newest version transitions for testing.

The code is the Python Software Foundation's (PSF License Agreement, version 2; the test suite's
data files are not copied).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from nep.util.cli import run_main
from nep.util.errors import NepError

DEFAULT_ROOT = Path("~/.pyenv/versions")  # pyenv's default place (`pyenv root`/versions)
PYENV = "pyenv"  # the value of ingest.git.stdlib_root that asks `pyenv root`
# The releases presets/smollm2.yaml's pinned ingest.git.rev was built from: other patch releases
# give other files, so other commits.
RELEASES = ("3.6.15", "3.7.16", "3.8.18", "3.9.18", "3.10.13", "3.11.7", "3.12.1", "3.13.0")
EXCLUDED_DIRS = {"site-packages", "__pycache__", "lib-dynload"}
EPOCH = 1577836800  # 2020-01-01T00:00:00Z; commit i is dated EPOCH + i days
AUTHOR = ("CPython developers", "cpython@python.invalid")


def pyenv_root() -> Path | None:
    """`$(pyenv root)` when pyenv is installed (it honours PYENV_ROOT), else None."""
    exe = shutil.which("pyenv")
    if exe is None:
        return None
    try:
        done = subprocess.run([exe, "root"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    return Path(done.stdout.strip()) if done.returncode == 0 and done.stdout.strip() else None


def resolve_root(value: str) -> Path:
    """The folder `ingest.git.stdlib_root` names: `pyenv` asks `pyenv root` (its versions/ folder;
    ~/.pyenv/versions when pyenv is not on PATH); any other value is a path, `~` and $VARIABLES
    expanded."""
    if value == PYENV:
        root = pyenv_root()
        return (root / "versions") if root else DEFAULT_ROOT.expanduser()
    return Path(os.path.expandvars(os.path.expanduser(value)))


def install_hint(libs: dict[str, Path]) -> str:
    """One line: the releases of RELEASES not installed, as a `pyenv install` command."""
    have = {lib.parent.parent.name for lib in libs.values()}
    missing = [r for r in RELEASES if r not in have]
    if not missing:
        return ""
    return (f"pyenv install {' '.join(missing)}  (the releases presets/smollm2.yaml's ingest.git.rev was built "
            "from; others build other commits)")


def installed(root: Path) -> dict[str, Path]:
    """{"3.X": stdlib directory} for each Python 3 installed under `root` (one per minor: the
    newest patch release when several are)."""
    found: dict[str, tuple[tuple[int, ...], Path]] = {}
    for version_dir in root.glob("3.*"):
        m = re.fullmatch(r"3\.(\d+)\.(\d+)", version_dir.name)
        if not m:
            continue
        minor = f"3.{m[1]}"
        lib = version_dir / "lib" / f"python{minor}"
        key = (int(m[1]), int(m[2]))
        if lib.is_dir() and (minor not in found or key > found[minor][0]):
            found[minor] = (key, lib)
    return {minor: lib for minor, (_, lib) in sorted(found.items(), key=lambda kv: kv[1][0])}


def source_files(lib: Path) -> list[str]:
    """The `.py` files of a stdlib directory, relative paths sorted (config-* build dirs and
    EXCLUDED_DIRS left out)."""
    files = []
    for dirpath, dirnames, filenames in os.walk(lib):
        dirnames[:] = sorted(d for d in dirnames if d not in EXCLUDED_DIRS and not d.startswith("config-"))
        for name in filenames:
            if name.endswith(".py"):
                files.append(os.path.relpath(os.path.join(dirpath, name), lib))
    return sorted(files)


def _git(dest: Path, *args: str, input: bytes | None = None, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(["git", "-C", str(dest), *args], input=input, capture_output=True, env=env)
    if result.returncode != 0:
        raise NepError(f"git {' '.join(args[:2])} failed in {dest}: {result.stderr.decode(errors='replace').strip()}")
    return result.stdout.decode().strip()


def build(dest: Path, libs: dict[str, Path], *, quiet: bool = False) -> list[tuple[str, str]]:
    """Write the repository at `dest` (created; it must not exist or be empty): one commit per
    version of `libs` in order. Returns [(version, commit sha)]."""
    if dest.exists() and any(dest.iterdir()):
        raise NepError(f"{dest}: exists and is not empty; give a new directory", hint="remove it to rebuild")
    if len(libs) < 2:
        raise NepError(f"need at least two Python 3 standard libraries, found {sorted(libs) or 'none'}")
    dest.mkdir(parents=True, exist_ok=True)
    dest = dest.resolve()
    _git(dest, "init", "-q", "-b", "main")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    commits: list[tuple[str, str]] = []
    parent = ""
    for i, (version, lib) in enumerate(libs.items()):
        files = source_files(lib)
        paths = "".join(f"{lib / rel}\n" for rel in files).encode()
        shas = _git(dest, "hash-object", "-w", "--no-filters", "--stdin-paths", input=paths).split()
        entries = [f"100644 blob {sha}\t{rel}" for rel, sha in zip(files, shas, strict=True)]
        index_env = {**base_env, "GIT_INDEX_FILE": str(dest / ".git" / "nep-index")}
        _git(dest, "read-tree", "--empty", env=index_env)
        _git(dest, "update-index", "--index-info", input=("\n".join(entries) + "\n").encode(), env=index_env)
        tree = _git(dest, "write-tree", env=index_env)
        date = f"{EPOCH + i * 86400} +0000"
        env = {**base_env, "GIT_AUTHOR_NAME": AUTHOR[0], "GIT_AUTHOR_EMAIL": AUTHOR[1], "GIT_AUTHOR_DATE": date,
               "GIT_COMMITTER_NAME": AUTHOR[0], "GIT_COMMITTER_EMAIL": AUTHOR[1], "GIT_COMMITTER_DATE": date}
        message = f"Python {version} standard library ({len(entries)} files)\n"
        args = ["commit-tree", tree, *(["-p", parent] if parent else [])]
        parent = _git(dest, *args, input=message.encode(), env=env)
        commits.append((version, parent))
        if not quiet:
            print(f"{version}: {parent} ({len(entries)} files from {lib})", file=sys.stderr)
    _git(dest, "update-ref", "refs/heads/main", parent)
    (dest / ".git" / "nep-index").unlink(missing_ok=True)
    return commits


def ensure_history(dest: Path, root: Path) -> Path:
    """`dest` as is when it exists, else the history of every Python 3 stdlib under `root` built
    there (in a temporary sibling first, renamed when complete, so an interrupted build leaves
    nothing that looks finished)."""
    if dest.exists():
        return dest
    libs = installed(root)
    if len(libs) < 2:
        raise NepError(f"needs at least two Python 3 standard libraries, found {sorted(libs) or 'none'}",
                       path=root, param="ingest.git.stdlib_root",
                       hint=f"{install_hint(libs) or 'pyenv install 3.X'}; or set it to the folder holding them, "
                            f"`{PYENV}` (asks `pyenv root`), or \"\"")
    if hint := install_hint(libs):
        print(f"ingest: {root} lacks Python releases the smollm2 preset pins; to get its commits: {hint}",
              file=sys.stderr)
    tmp = dest.with_name(f".{dest.name}.building")
    if tmp.exists():
        shutil.rmtree(tmp)
    print(f"ingest: building {dest} from the standard libraries of Python {', '.join(libs)} under {root}",
          file=sys.stderr)
    build(tmp, libs, quiet=True)
    tmp.rename(dest)
    return dest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m nep.data.stdlib_history", description=__doc__.split("\n\n")[0])
    parser.add_argument("dest", type=Path, help="new directory for the repository")
    parser.add_argument("--root", default=PYENV, help="pyenv versions directory (default: `pyenv root`/versions)")
    parser.add_argument("--versions", nargs="*", help="minor versions to use, e.g. 3.10 3.11 (default: all)")
    args = parser.parse_args(argv)
    args.root = resolve_root(args.root)
    libs = installed(args.root)
    if args.versions:
        missing = [v for v in args.versions if v not in libs]
        if missing:
            raise NepError(f"--versions: {', '.join(missing)} not installed under {args.root} (found {', '.join(libs)})")
        libs = {v: libs[v] for v in sorted(args.versions, key=lambda v: int(v.split(".")[1]))}
    commits = build(args.dest, libs)
    print(f"{args.dest}: {len(commits)} commits, HEAD {commits[-1][1]}")


if __name__ == "__main__":
    run_main(main, "stdlib_history")
