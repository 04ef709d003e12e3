"""Uncertainty for small test sets: bootstrap confidence intervals and paired tests (numpy).

Per-example values are float arrays with NaN where a metric is undefined for an example; a mean
leaves NaNs out (0.0 when nothing is defined). Resampling is seeded, so the same inputs and seed
give the same intervals and p-values on every run.

- `bootstrap_totals`/`bootstrap_means`: sums/means of B resamples (examples drawn with
  replacement) for several metrics at once, each resample as the count of each example in it, so
  a block of resamples is one matrix product.
- `bootstrap_ci`: the percentile interval of those means.
- `mcnemar_p`: exact two-sided McNemar test for paired 0/1 outcomes (binomial test on the
  discordant pairs).
- `paired_permutation_p`: two-sided paired permutation (sign-flip) test that the mean difference
  is 0; unlike a paired bootstrap it stays valid on a handful of examples.
"""

from __future__ import annotations

import math

import numpy as np

_BLOCK_CELLS = 2_000_000  # resamples × examples held in memory at once


def nan_mean(values: np.ndarray) -> float:
    """Mean of the defined (non-NaN) values; 0.0 when none is defined."""
    defined = values[~np.isnan(values)]
    return float(defined.mean()) if defined.size else 0.0


def bootstrap_totals(values: np.ndarray, samples: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """values: (metrics, n) → the (metrics, samples) sums of the defined values of each resample,
    and how many defined values each holds. Every metric sees the same resamples."""
    values = np.atleast_2d(np.asarray(values, dtype=float))
    n = values.shape[1]
    if n == 0 or samples <= 0:
        empty = np.zeros((values.shape[0], max(samples, 0)))
        return empty, empty.copy()
    defined = ~np.isnan(values)
    filled, ones = np.where(defined, values, 0.0), defined.astype(float)
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // n)
    sums, counts = [], []
    for start in range(0, samples, block):
        b = min(block, samples - start)
        drawn = rng.integers(0, n, size=(b, n))  # each resample: n examples drawn with replacement
        # how often each example was drawn, per resample: (n, b)
        weights = np.bincount((np.arange(b)[:, None] * n + drawn).ravel(), minlength=b * n).reshape(b, n).T
        sums.append(filled @ weights)
        counts.append(ones @ weights)
    return np.concatenate(sums, axis=1), np.concatenate(counts, axis=1)


def bootstrap_means(values: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """values: (metrics, n) → (metrics, samples) resampled means (NaN where a resample holds no
    defined value)."""
    return means(*bootstrap_totals(values, samples, seed))


def means(total: np.ndarray, count: np.ndarray) -> np.ndarray:
    """total / count elementwise, NaN where count is 0 (a resample without a defined value)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.where(count > 0, count, 1), np.nan)


def ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den elementwise, 0.0 where den is 0 (a rate with an empty denominator)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(den > 0, num / np.where(den > 0, den, 1), 0.0)


def bootstrap_ci(means: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of one metric's resampled means; (0.0, 0.0) when none is defined."""
    means = means[~np.isnan(means)]
    if not means.size:
        return 0.0, 0.0
    tail = (1.0 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(lo), float(hi)


def mcnemar_p(a: np.ndarray, b: np.ndarray) -> float:
    """Exact two-sided McNemar p-value for paired 0/1 values (NaN pairs left out); 1.0 without
    discordant pairs."""
    both = ~(np.isnan(a) | np.isnan(b))
    x, y = a[both] > 0.5, b[both] > 0.5
    only_a, only_b = int(np.sum(x & ~y)), int(np.sum(~x & y))
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1))
    return min(1.0, 2 * tail / 2**n)


def paired_permutation_p(a: np.ndarray, b: np.ndarray, rounds: int, seed: int) -> float:
    """Two-sided paired permutation (sign-flip) p-value for mean(a - b) = 0: the share of sign
    assignments of the per-example differences whose mean is at least as far from 0 as the
    observed one. Exact (every assignment) when 2^n <= rounds, else `rounds` seeded random ones,
    add-one smoothed. NaN pairs are left out; 1.0 without a pair."""
    diff = a - b
    diff = diff[~np.isnan(diff)]
    n = diff.size
    if n == 0:
        return 1.0
    observed = abs(diff.sum()) * (1 - 1e-12)  # tolerate rounding in sums equal to the observed one
    if n < 63 and 2**n <= rounds:
        signs = 1 - 2 * ((np.arange(2**n)[:, None] >> np.arange(n)) & 1)
        return float(np.mean(np.abs(signs @ diff) >= observed))
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_CELLS // n)
    extreme = 0
    for start in range(0, rounds, block):
        signs = 1 - 2 * rng.integers(0, 2, size=(min(block, rounds - start), n))
        extreme += int(np.sum(np.abs(signs @ diff) >= observed))
    return (extreme + 1) / (rounds + 1)
