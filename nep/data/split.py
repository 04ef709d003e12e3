"""Train/test splits of processed examples without leakage.

- `repo`: whole repositories go to test (a seeded shuffle of the repository names, taken until the
  test set holds `test_fraction` of the examples); a repository is never on both sides.
- `time`: within each repository, its newest commits go to test (until `test_fraction` of that
  repository's examples); commits without a timestamp are ordered by a seeded hash, before the
  timed ones. All files of one commit land on the same side.
- `external`: the test set is given (`split.external_test`: nep's processed JSONL or the NEP dataset,
  nep.data.nep_dataset); training examples that share a commit with it are dropped (counted as `leaked`).
- `auto`: `repo` when there are several repositories, else `time`.

The examples to split are the process stage's, or the ones `split.external_train` names (e.g. the NEP
dataset's `train` split, used as given).

`max_train` / `max_test` cap each side with a seeded sample. `repeat_share` > 0 draws that share of the
training sample from the examples whose next edit repeats an edit of their own history: `propagate`'s
rules (nep/predictors/propagate.py), applied to the example, give a next version that scores at least
`REPEAT_MIN_DELTA_CHRF` delta chrF (Zed's, nep/evaluate/zed.py) against the real one. The rest is drawn
from the other training examples. The test side is never selected this way.

Whatever the strategy, the final two sides are checked for leakage (nep/data/leakage.py: test examples
whose next version, edit or window training also has): counted in metrics/split.json, examples of each
kind logged, and the stage fails above `split.leakage.max_rate.<kind>`.
"""

from __future__ import annotations

import hashlib
import logging
import random
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nep.config.schema import Split as SplitParams
from nep.core.examples import read_examples
from nep.data.leakage import check_limits, find_leakage
from nep.data.nep_dataset import load_external
from nep.evaluate.zed import delta_chr_f
from nep.predictors.propagate import propagate
from nep.util.errors import NepError
from nep.util.jsonl import flat_counts

STRATEGIES = ("auto", "repo", "time", "external")
log = logging.getLogger(__name__)



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
        raise NepError(f"split.strategy repo needs at least two repositories, found {repos}")
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


def sample_examples(examples: list[dict[str, Any]], n: int, seed: int) -> list[dict[str, Any]]:
    """A seeded sample of `n` examples (`split.max_train`, `max_test`), in their input order."""
    keep = sorted(random.Random(f"{seed}:sample").sample(range(len(examples)), n))
    return [examples[i] for i in keep]


REPEAT_MIN_DELTA_CHRF = 0.5


def repeats_history(example: dict[str, Any]) -> bool:
    """Whether the example's next edit repeats an edit of its history (`split.repeat_share`): one of
    `propagate`'s rules applies to original → current and its next version scores at least
    REPEAT_MIN_DELTA_CHRF delta chrF against the real next version."""
    guess = propagate(example["original"], example["current"])
    if guess.rule == "identity":
        return False
    return delta_chr_f(example["current"], example["next"], guess.text).score >= REPEAT_MIN_DELTA_CHRF


def sample_train(examples: list[dict[str, Any]], n: int, seed: int, repeat_share: float) -> list[dict[str, Any]]:
    """The training sample (`split.max_train`): a seeded sample of `n` examples, in input order; with
    `repeat_share` > 0, round(share × n) of them drawn from the examples that repeat their history and
    the rest from the others. Raises NepError naming the param when either group is too small."""
    if not repeat_share:
        return sample_examples(examples, n, seed)
    repeating = [i for i, e in enumerate(examples) if repeats_history(e)]
    chosen = set(repeating)
    others = [i for i in range(len(examples)) if i not in chosen]
    want = round(repeat_share * n)
    if len(repeating) < want or len(others) < n - want:
        raise NepError(
            f"split.repeat_share {repeat_share} of split.max_train {n} wants {want} training examples that "
            f"repeat their history and {n - want} others; the training side has {len(repeating)} and "
            f"{len(others)}: lower split.repeat_share or split.max_train"
        )
    rng = random.Random(f"{seed}:repeat_share")
    keep = sorted(rng.sample(repeating, want) + rng.sample(others, n - want))
    return [examples[i] for i in keep]


def split_examples(
    examples: list[dict[str, Any]],
    *,
    strategy: str,
    test_fraction: float,
    seed: int,
    external: list[dict[str, Any]] | None = None,
) -> Split:
    """Split examples into train and test (input order kept on each side)."""
    if strategy not in STRATEGIES:
        raise NepError(f"split.strategy must be one of {STRATEGIES}, not {strategy!r}")
    if not 0 < test_fraction < 1 and strategy != "external":
        raise NepError(f"split.test_fraction must be in (0, 1), got {test_fraction}")
    if strategy == "auto":
        strategy = "repo" if len({e["repos"] for e in examples}) > 1 else "time"
    if strategy == "external":
        if not external:
            raise NepError("split.strategy external needs a non-empty split.external_test file")
        # By commit alone: external sets may not name the repository (the NEP dataset does not).
        test_commits = {e["commit"] for e in external}
        train = [e for e in examples if e["commit"] not in test_commits]
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


def split_dataset(cfg: SplitParams, *, examples_path: Path) -> tuple[Split, dict[str, Any]]:
    """Read what to split (`examples_path`, or `cfg.external_train`) and the external test set,
    split as the `split:` params say, and return the split with its flat metrics. Raises NepError
    naming the param."""
    strategy, test_fraction, seed = cfg.strategy, cfg.test_fraction, cfg.seed
    external_test, external_train, external_revision = cfg.external_test, cfg.external_train, cfg.external_revision
    if external_test and strategy != "external":
        raise NepError(f"split.external_test is set but split.strategy is {strategy!r}: "
                         "set split.strategy: external, or clear split.external_test")
    if strategy == "external" and not external_test:
        raise NepError("split.strategy is external but split.external_test is empty: name a processed "
                         "JSONL, a file or directory in the NEP schema, or the hub id lurf21/NextEditPrediction")
    info: dict[str, Any] = {}
    drops: Counter = Counter()
    if external_train:
        ext = load_external(external_train, split="train", revision=external_revision, param="external_train")
        examples, drops = ext.examples, ext.drops
        info.update({"format.train": ext.format, **flat_counts("external_train", ext.stats)})
    else:
        examples = read_examples(examples_path, drops)
        if not examples:
            raise NepError(
                f"{examples_path}: no example reached split. Likely causes: a shallow clone or a short history "
                "(git fetch --unshallow; mine more repositories in ingest.git.repos), filters too strict "
                "(see metrics/filter.json; e.g. filter.edit_types: [add, delete, replace]), or every record "
                "labeled irrelevant (metrics/label.json)."
            )
    external = None
    if external_test:
        ext = load_external(external_test, split="test", revision=external_revision, param="external_test")
        external = ext.examples
        info.update({"format.test": ext.format, **flat_counts("external_test", ext.stats),
                     **flat_counts("dropped.external_test", ext.drops)})
    result = split_examples(examples, strategy=strategy, test_fraction=test_fraction, seed=seed, external=external)
    sampled = {}
    for side, cap in (("train", cfg.max_train), ("test", cfg.max_test)):
        rows = getattr(result, side)
        if side == "train" and cfg.repeat_share and len(rows) <= cap:
            raise NepError(f"split.repeat_share selects within a sample, but the training side has {len(rows)} "
                           f"examples, not more than split.max_train {cap}: lower split.max_train, or "
                           "split.repeat_share: 0")
        if cap and len(rows) > cap:
            if side == "train":
                setattr(result, side, sample_train(rows, cap, seed, cfg.repeat_share))
            else:
                setattr(result, side, sample_examples(rows, cap, seed))
            sampled[f"sampled_out.{side}"] = len(rows) - cap
    if cfg.repeat_share:  # the sample holds exactly this many (sample_train draws them, or fails)
        sampled["train.repeats_history"] = round(cfg.repeat_share * cfg.max_train)
    if not result.train or not result.test:
        side = "test" if not result.test else "train"
        raise NepError(
            f"split ({result.strategy}) left the {side} set empty with {len(examples)} examples from "
            f"{len({e['repos'] for e in examples})} repositories and {len({e['commit'] for e in examples})} "
            "commits: mine more history or repositories, or relax the filters"
            + (" (every training example shares a commit with the test set)" if result.leaked else "") + "."
        )
    leak_cfg = cfg.leakage
    leakage = find_leakage(result.train, result.test, ngram=leak_cfg.ngram,
                           window_similarity=leak_cfg.window_similarity, seed=seed)
    for line in leakage.log_lines(leak_cfg.examples):
        log.info(line)
    check_limits(leakage, leak_cfg.max_rate.model_dump())
    metrics = {
        "strategy": result.strategy,
        "train": len(result.train),
        "test": len(result.test),
        "test_share": round(len(result.test) / (len(result.train) + len(result.test)), 4),
        "repos.train": len({e["repos"] for e in result.train}),
        "repos.test": len({e["repos"] for e in result.test}),
        "commits.train": len({(e["repos"], e["commit"]) for e in result.train}),
        "commits.test": len({(e["repos"], e["commit"]) for e in result.test}),
        "dropped.leaked": result.leaked,
        **flat_counts("dropped", drops),
        **sampled,
        **info,
        **leakage.metrics(),
    }
    return result, metrics
