"""A synthetic multi-language git history whose commits pass nep's default filters.

`make_history(root)` (or `python tests/history.py OUT`) builds `repos` repositories under `root`.
Each one starts with a few source files in the paper's languages; then every commit makes small,
related, add-only edits in one or two files: a new constant, a function that uses it and sometimes
a call site (2-3 chunks of 1-4 lines, close together, sharing identifiers, so the heuristic labeler
keeps them). Some commits also carry edits the default filters drop (a replacement in another
file, a README change), as real history does. Commit times increase, so the time split has an order. Deterministic for a given seed.
"""

from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

# language → (file name, header lines, footer lines, constant, function lines, call site)
TEMPLATES: dict[str, tuple[str, list[str], list[str], str, list[str], str]] = {
    "Python": ("calc.py", ['"""Calculations."""\n'], [], "LIMIT_{k} = {v}\n",
               ["def check_{k}(x):\n", "    return x < LIMIT_{k}\n"], "assert check_{k}({v} - 1)\n"),
    "Java": ("Store.java", ["public class Store {\n"], ["}\n"], "    static final int LIMIT_{k} = {v};\n",
             ["    static boolean check{k}(int x) {{\n", "        return x < LIMIT_{k};\n", "    }}\n"],
             "    static boolean ok{k} = check{k}({v} - 1);\n"),
    "Go": ("util.go", ["package util\n"], [], "const limit{k} = {v}\n",
           ["func check{k}(x int) bool {{\n", "\treturn x < limit{k}\n", "}}\n"], "var ok{k} = check{k}({v} - 1)\n"),
    "C": ("math.c", ["#include <stdio.h>\n"], [], "#define LIMIT_{k} {v}\n",
          ["int check_{k}(int x) {{ return x < LIMIT_{k}; }}\n"], "int ok_{k}(void) {{ return check_{k}({v} - 1); }}\n"),
    "C++": ("list.cpp", ["#include <vector>\n"], [], "constexpr int kLimit{k} = {v};\n",
            ["bool check{k}(int x) {{\n", "    return x < kLimit{k};\n", "}}\n"], "static bool ok{k} = check{k}({v} - 1);\n"),
    "JavaScript": ("app.js", ['"use strict";\n'], [], "const LIMIT_{k} = {v};\n",
                   ["function check{k}(x) {{\n", "  return x < LIMIT_{k};\n", "}}\n"], "module.exports.ok{k} = check{k}({v} - 1);\n"),
    "TypeScript": ("view.ts", ["export {};\n"], [], "const LIMIT_{k}: number = {v};\n",
                   ["function check{k}(x: number): boolean {{\n", "  return x < LIMIT_{k};\n", "}}\n"],
                   "export const ok{k} = check{k}({v} - 1);\n"),
}
COMMENT = {"Python": "#", "Go": "//", "C": "//", "C++": "//", "Java": "//", "JavaScript": "//", "TypeScript": "//"}


def _git(repo: Path, *args: str, date: str | None = None) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "Synthetic", "GIT_AUTHOR_EMAIL": "synthetic@example.com",
           "GIT_COMMITTER_NAME": "Synthetic", "GIT_COMMITTER_EMAIL": "synthetic@example.com"}
    if date:
        env["GIT_AUTHOR_DATE"] = env["GIT_COMMITTER_DATE"] = date
    subprocess.run(["git", *args], cwd=repo, env=env, check=True, capture_output=True)


def _commit(repo: Path, files: dict[str, list[str]], message: str, when: int) -> None:
    for lang, lines in files.items():
        (repo / TEMPLATES[lang][0]).write_text("".join(lines))
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", message, date=f"{when} +0000")


def _body(lang: str, name: str, n: int) -> list[str]:
    """`n` distinct filler lines: constants named after the file."""
    c = COMMENT[lang]
    return [f"{c} {name} entry {i}: reserved slot number {i * 7 + 3}\n" for i in range(n)]


def make_history(root: Path, repos: int = 2, commits_per_repo: int = 20, seed: int = 0) -> list[Path]:
    """Build `repos` git repositories under `root` (repo0, repo1, ...) with `commits_per_repo`
    commits each (the first adds the files); return their paths."""
    rng = random.Random(seed)
    languages = list(TEMPLATES)
    paths = []
    for r in range(repos):
        repo = Path(root) / f"repo{r}"
        repo.mkdir(parents=True)
        _git(repo, "init", "-q", "-b", "main")
        langs = [languages[(r * 3 + i) % len(languages)] for i in range(4)]
        files: dict[str, list[str]] = {}
        for lang in langs:
            name, header, footer, *_ = TEMPLATES[lang]
            files[lang] = header + _body(lang, f"r{r}-{name}", 24) + footer
        (repo / "README.md").write_text(f"# repo{r}\n")
        _commit(repo, files, "Add the initial sources", 1_704_067_200 + r * 10_000_000)
        for c in range(1, commits_per_repo):
            touched = rng.sample(langs, 2 if rng.random() < 0.5 else 1)
            for lang in touched:
                _, header, footer, const, func, call = TEMPLATES[lang]
                k, v = f"{c}x{langs.index(lang)}", rng.randint(10, 999)
                lines = files[lang]
                lo, hi = len(header), len(lines) - len(footer)
                start = rng.randint(lo, max(lo, hi - 20))
                gap = rng.randint(2, 8)
                chunks = [(start, [const.format(k=k, v=v)])]
                body = [f.format(k=k, v=v) for f in func]
                if rng.random() < 0.3:  # a documented variant: a 1-2 line longer chunk
                    body = [f"{COMMENT[lang]} check{k} compares against the new limit {v}\n"] + body
                chunks.append((start + gap, body))
                if rng.random() < 0.5:
                    chunks.append((start + gap + rng.randint(2, 6), [call.format(k=k, v=v)]))
                for pos, new in reversed(chunks):
                    pos = min(pos, hi)
                    lines[pos:pos] = new
            if c % 4 == 0:  # an edit the default filters drop: one line replaced in another file
                other = next(lang for lang in langs if lang not in touched)
                lines = files[other]
                i = len(TEMPLATES[other][1]) + rng.randint(0, 5)
                lines[i] = lines[i].replace("reserved", f"revised{c}")
            if c % 6 == 3:  # two unrelated notes in a third file: the heuristic labeler says 0
                other = next(lang for lang in reversed(langs) if lang not in touched)
                lines = files[other]
                i = len(TEMPLATES[other][1]) + rng.randint(0, 10)
                mark = COMMENT[other]
                lines[i + 4 : i + 4] = [f"{mark} FIXME speed{c}b up lookups\n"]
                lines[i:i] = [f"{mark} TODO tidy{c}a the naming\n"]
            if c % 5 == 0:
                (repo / "README.md").write_text(f"# repo{r}\n\nRevision {c}.\n")
            _commit(repo, files, f"Add limit checks, step {c}", 1_704_067_200 + r * 10_000_000 + c * 3600)
        paths.append(repo)
    return paths


def main() -> None:
    """`python tests/history.py OUT [--repos N] [--commits N] [--seed N]`: build the repositories
    under OUT and print their paths as a YAML/JSON list, ready for `-S ingest.git.repos=...`."""
    import argparse
    import json

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--repos", type=int, default=2)
    parser.add_argument("--commits", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    paths = make_history(args.out.resolve(), repos=args.repos, commits_per_repo=args.commits, seed=args.seed)
    print(json.dumps([str(p) for p in paths]))


if __name__ == "__main__":
    main()
