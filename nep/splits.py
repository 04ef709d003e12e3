"""Train/test splits of processed examples without leakage.

- `repo`: whole repositories go to test (a seeded shuffle of the repository names, taken until the
  test set holds `test_fraction` of the examples); a repository is never on both sides.
- `time`: within each repository, its newest commits go to test (until `test_fraction` of that
  repository's examples); commits without a timestamp are ordered by a seeded hash, before the
  timed ones. All files of one commit land on the same side.
- `external`: the test set is a given processed JSONL file; training examples that share a commit
  with it are dropped (counted as `leaked`).
- `auto`: `repo` when there are several repositories, else `time`.
"""

from __future__ import annotations

import hashlib
import random
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

STRATEGIES = ("auto", "repo", "time", "external")


class SplitError(ValueError):
    """A split that cannot be made (too little data, unknown strategy)."""


@dataclass
class Split:
    train: list[dict[str, Any]]
    test: list[dict[str, Any]]
    strategy: str
    leaked: int = 0


def _repo_split(examples: list[dict[str, Any]], test_fraction: float, seed: int) -> set[str]:
    """Repositories that form the test set."""
    sizes: dict[str, int] = defaultdict(int)
    for e in examples:
        sizes[e["repos"]] += 1
    repos = sorted(sizes)
    if len(repos) < 2:
        raise SplitError(f"split.strategy repo needs at least two repositories, found {repos}")
    random.Random(seed).shuffle(repos)
    target = test_fraction * len(examples)
    test: set[str] = set()
    total = 0
    for repo in repos[:-1]:  # the last one always trains
        if total >= target:
            break
        test.add(repo)
        total += sizes[repo]
    return test


def _commit_order_key(commit: str, timestamp: int | None, seed: int) -> tuple[int, int, str]:
    tie = hashlib.sha1(f"{seed}:{commit}".encode()).hexdigest()
    return (0 if timestamp is None else 1, timestamp or 0, tie)


def _time_split(examples: list[dict[str, Any]], test_fraction: float, seed: int) -> set[tuple[str, str]]:
    """(repository, commit) pairs that form the test set: each repository's newest commits."""
    by_repo: dict[str, dict[str, list[dict[str, Any]]]] = defaultdict(lambda: defaultdict(list))
    for e in examples:
        by_repo[e["repos"]][e["commit"]].append(e)
    test: set[tuple[str, str]] = set()
    for repo, commits in by_repo.items():
        if len(commits) < 2:
            continue  # a single commit cannot be split without splitting the commit; it trains
        n = sum(len(v) for v in commits.values())
        order = sorted(commits, key=lambda c: _commit_order_key(c, commits[c][0].get("timestamp"), seed))
        taken = 0
        for commit in reversed(order[1:]):  # newest first; the oldest always trains
            if taken >= test_fraction * n:
                break
            test.add((repo, commit))
            taken += len(commits[commit])
    return test


def split_examples(
    examples: list[dict[str, Any]],
    *,
    strategy: str = "auto",
    test_fraction: float = 0.2,
    seed: int = 42,
    external: list[dict[str, Any]] | None = None,
) -> Split:
    """Split examples into train and test (input order kept on each side)."""
    if strategy not in STRATEGIES:
        raise SplitError(f"split.strategy must be one of {STRATEGIES}, not {strategy!r}")
    if not 0 < test_fraction < 1 and strategy != "external":
        raise SplitError(f"split.test_fraction must be in (0, 1), got {test_fraction}")
    if strategy == "auto":
        strategy = "repo" if len({e["repos"] for e in examples}) > 1 else "time"
    if strategy == "external":
        if not external:
            raise SplitError("split.strategy external needs a non-empty split.external_test file")
        test_commits = {(e["repos"], e["commit"]) for e in external}
        train = [e for e in examples if (e["repos"], e["commit"]) not in test_commits]
        return Split(train, list(external), strategy, leaked=len(examples) - len(train))
    if strategy == "repo":
        test_repos = _repo_split(examples, test_fraction, seed)
        in_test = [e["repos"] in test_repos for e in examples]
    else:
        test_commits = _time_split(examples, test_fraction, seed)
        in_test = [(e["repos"], e["commit"]) in test_commits for e in examples]
    train = [e for e, t in zip(examples, in_test) if not t]
    test = [e for e, t in zip(examples, in_test) if t]
    return Split(train, test, strategy)
