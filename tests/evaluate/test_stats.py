"""Bootstrap intervals and paired tests (nep/evaluate/stats.py) on values whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from nep.evaluate import stats
from nep.evaluate.stats import bootstrap_ci, bootstrap_means, mcnemar_p, nan_mean, paired_permutation_p


def test_bootstrap_is_seeded_and_block_size_free(monkeypatch):
    values = np.array([[1, 0, 1, 1, 0, 1, 0, 0, 1, 1], [0.1, 0.5, 0.9, 0.3, 0.2, 0.4, 0.8, 0.6, 0.7, 0.0]])
    a = bootstrap_means(values, 500, seed=7)
    assert a.shape == (2, 500)
    assert np.array_equal(a, bootstrap_means(values, 500, seed=7))
    assert not np.array_equal(a, bootstrap_means(values, 500, seed=8))
    monkeypatch.setattr(stats, "_BLOCK_CELLS", 30)  # 3 resamples per block
    assert np.array_equal(a, bootstrap_means(values, 500, seed=7))


def test_interval_of_a_constant_is_the_constant():
    means = bootstrap_means(np.full((1, 20), 0.25), 100, seed=0)[0]
    assert bootstrap_ci(means) == (0.25, 0.25)


def test_interval_width_matches_the_normal_approximation():
    values = np.array([[1.0, 0.0] * 100])  # p = 0.5, n = 200: 95% half-width ≈ 1.96 * sqrt(.25 / 200)
    lo, hi = bootstrap_ci(bootstrap_means(values, 4000, seed=1)[0])
    half = 1.96 * np.sqrt(0.25 / 200)
    assert lo < 0.5 < hi
    assert (hi - lo) / 2 == pytest.approx(half, rel=0.1)


def test_undefined_values_are_left_out():
    values = np.array([[1.0, np.nan, 1.0, np.nan]])
    assert nan_mean(values[0]) == 1.0
    means = bootstrap_means(values, 200, seed=0)[0]
    defined = means[~np.isnan(means)]
    assert defined.size > 150 and np.all(defined == 1.0)  # a resample of only NaNs has no mean
    assert nan_mean(np.array([np.nan])) == 0.0 and bootstrap_ci(np.array([np.nan])) == (0.0, 0.0)


def test_mcnemar_exact_values():
    ones, zeros = np.ones(5), np.zeros(5)
    assert mcnemar_p(ones, zeros) == pytest.approx(2 / 2**5)  # 5 discordant, all one way
    assert mcnemar_p(zeros, ones) == pytest.approx(2 / 2**5)
    assert mcnemar_p(np.ones(6), np.zeros(6)) == pytest.approx(2 / 2**6)
    a = np.array([1, 1, 1, 0, 0, 1, 1], dtype=float)  # 3 only-a, 2 only-b, 2 agree
    b = np.array([0, 0, 0, 1, 1, 1, 1], dtype=float)
    assert mcnemar_p(a, b) == 1.0  # (C(5,0)+C(5,1)+C(5,2)) * 2 / 32 = 1
    assert mcnemar_p(ones, ones) == 1.0
    assert mcnemar_p(np.array([1.0, np.nan]), np.array([0.0, 0.0])) == 1.0  # one pair: p = 2 * 1/2


def test_paired_permutation_p_exact_on_few_examples():
    a, b = np.array([0.5, 0.7, 0.9]), np.zeros(3)
    # 8 sign assignments; only all-plus and all-minus reach |sum| = 2.1
    assert paired_permutation_p(a, b, 10000, seed=0) == 0.25
    assert paired_permutation_p(a, a, 10000, seed=0) == 1.0
    assert paired_permutation_p(np.array([1.0, np.nan]), np.array([0.0, 0.0]), 100, seed=0) == 1.0  # 1 pair
    assert paired_permutation_p(np.array([]), np.array([]), 100, seed=0) == 1.0


def test_paired_permutation_p_sampled():
    rng = np.random.default_rng(0)
    base = rng.random(200)
    better = base + 0.2
    assert paired_permutation_p(better, base, 999, seed=0) == pytest.approx(1 / 1000)  # never as extreme
    noisy = base + np.where(np.arange(200) % 2 == 0, 0.05, -0.05)
    assert (noisy - base).sum() == 0  # mean difference 0: every sign assignment is at least as extreme
    assert paired_permutation_p(noisy, base, 999, seed=0) == 1.0


def test_paired_permutation_p_sampled_matches_the_exact_value():
    """With 16 pairs (65,536 sign assignments) the exact p is computable; 20,000 sampled assignments
    land within 0.01 of it (the binomial standard error is under 0.0036), and the same seed repeats."""
    rng = np.random.default_rng(2)
    base = rng.random(16)
    better = base + rng.normal(0.1, 0.3, 16)
    exact = paired_permutation_p(better, base, 2**16, seed=0)  # every assignment
    assert 0.1 < exact < 0.9  # a p that sampling could get wrong
    sampled = paired_permutation_p(better, base, 20_000, seed=0)
    assert sampled != exact and abs(sampled - exact) < 0.01
    assert sampled == paired_permutation_p(better, base, 20_000, seed=0)
