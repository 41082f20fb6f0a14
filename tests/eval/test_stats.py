"""Intervals: Newcombe's paired interval against the published worked examples, the bootstrap's two forms."""

from __future__ import annotations

import numpy as np
import pytest

from medgo.eval.metrics import prf_from_counts, wilson_interval
from medgo.eval.stats import (
    bootstrap_mean_interval,
    bootstrap_sum_draws,
    paired_bootstrap,
    paired_difference_se,
    paired_proportion_interval,
    wilson_bounds,
    z_value,
)


@pytest.mark.parametrize(
    ("counts", "expected"),
    [
        # Newcombe (1998), Statistics in Medicine 17:2635, Table II, method 10 (a, b, c, d).
        ((36, 12, 2, 0), (0.0569, 0.3404)),
        ((263, 15, 3, 19), (0.0118, 0.0713)),
    ],
)
def test_newcombe_method_10_matches_the_published_examples(counts, expected):
    diff, low, high = paired_proportion_interval(*counts, 0.95)
    _, b, c, _ = counts
    assert float(diff) == pytest.approx((b - c) / sum(counts))
    # The paper prints four decimals.
    assert (float(low), float(high)) == pytest.approx(expected, abs=1e-4)


def test_paired_interval_is_symmetric_and_bounded():
    diff, low, high = paired_proportion_interval(10, 7, 3, 5, 0.95)
    mdiff, mlow, mhigh = paired_proportion_interval(10, 3, 7, 5, 0.95)
    assert float(mdiff) == pytest.approx(-float(diff))
    assert (float(mlow), float(mhigh)) == pytest.approx((-float(high), -float(low)))
    _, low, high = paired_proportion_interval(0, 20, 0, 0, 0.95)
    assert -1.0 <= low <= high <= 1.0
    _, low, high = paired_proportion_interval(50, 0, 0, 50, 0.95)
    assert low < 0 < high  # identical answers: still uncertain about the difference


def test_paired_interval_covers_the_true_difference_at_its_level():
    rng = np.random.default_rng(3)
    n, sims = 200, 4000
    # cells: both right, only candidate, only baseline, neither
    probabilities = [0.55, 0.12, 0.08, 0.25]
    counts = rng.multinomial(n, probabilities, size=sims)
    _, low, high = paired_proportion_interval(*counts.T, 0.95)
    true = probabilities[1] - probabilities[2]
    coverage = float(np.mean((low <= true) & (true <= high)))
    assert 0.935 <= coverage <= 0.975


def test_wilson_bounds_match_the_scalar_definition():
    low, high = wilson_bounds(np.array([0, 3, 8, 10]), 10, z_value(0.95))
    for k, lo, hi in zip([0, 3, 8, 10], low, high, strict=True):
        assert (lo, hi) == pytest.approx(wilson_interval(k, 10), abs=1e-3)


def test_paired_difference_se():
    assert float(paired_difference_se(10, 10, 100)) == pytest.approx(np.sqrt(0.2 / 100))
    assert float(paired_difference_se(0, 0, 100)) == 0.0


class TestPairedBootstrap:
    def test_both_forms_give_the_same_distribution(self):
        """Recomputing micro-F1 on resampled records equals the vectorised sums form, seed for seed."""
        rng = np.random.default_rng(0)
        cand = [tuple(int(x) for x in row) for row in rng.integers(0, 4, size=(60, 3))]
        base = [tuple(int(x) for x in row) for row in rng.integers(0, 4, size=(60, 3))]

        def f1(stats):
            return prf_from_counts(
                sum(s[0] for s in stats), sum(s[1] for s in stats), sum(s[2] for s in stats)
            )["f1"]

        def f1_from_sums(sums):
            tp, pred, gold = sums[..., 0], sums[..., 1], sums[..., 2]
            return np.where(pred + gold > 0, 2 * tp / np.maximum(pred + gold, 1), 0.0)

        by_metric = paired_bootstrap(cand, base, confidence=0.9, n_resamples=300, seed=5, metric=f1)
        by_sums = paired_bootstrap(
            cand,
            base,
            confidence=0.9,
            n_resamples=300,
            seed=5,
            sums=(np.array(cand, float), np.array(base, float), f1_from_sums),
        )
        assert by_sums.difference == pytest.approx(by_metric.difference)
        # Different draws of the same distribution: intervals agree to resampling noise.
        assert by_sums.low == pytest.approx(by_metric.low, abs=0.06)
        assert by_sums.high == pytest.approx(by_metric.high, abs=0.06)

    def test_clear_difference_and_reproducibility(self):
        cand, base = [1.0] * 30, [0.0] * 30
        matrix_c, matrix_b = np.ones((30, 1)), np.zeros((30, 1))
        result = paired_bootstrap(
            cand,
            base,
            confidence=0.95,
            n_resamples=200,
            seed=1,
            sums=(matrix_c, matrix_b, lambda s: s[..., 0] / 30),
        )
        assert (result.difference, result.low, result.high, result.se) == (1.0, 1.0, 1.0, 0.0)
        again = paired_bootstrap(
            cand, base, confidence=0.95, n_resamples=200, seed=1, metric=lambda v: sum(v) / len(v)
        )
        assert (again.low, again.high) == (1.0, 1.0)

    def test_errors(self):
        with pytest.raises(ValueError, match="same items"):
            paired_bootstrap([1, 0], [1], confidence=0.95, n_resamples=10, seed=0, metric=sum)
        with pytest.raises(ValueError, match="zero items"):
            paired_bootstrap([], [], confidence=0.95, n_resamples=10, seed=0, metric=sum)
        with pytest.raises(ValueError, match="exactly one"):
            paired_bootstrap([1], [1], confidence=0.95, n_resamples=10, seed=0)


def test_bootstrap_sum_draws_resample_items_with_replacement():
    matrix = np.arange(5, dtype=float)[:, None] * np.array([[1.0, 10.0]])
    draws = bootstrap_sum_draws(matrix, 2000, seed=0)
    assert draws.shape == (2000, 2)
    assert np.allclose(draws[:, 1], draws[:, 0] * 10)  # columns share the same resampled items
    assert draws[:, 0].mean() == pytest.approx(10.0, abs=0.15)  # E[sum] = n * mean = 5 * 2
    assert draws[:, 0].min() >= 0 and draws[:, 0].max() <= 20


def test_bootstrap_mean_interval():
    low, high = bootstrap_mean_interval([0.0, 1.0] * 50, confidence=0.95, n_resamples=1000, seed=0)
    assert low < 0.5 < high and high - low == pytest.approx(0.2, abs=0.05)
