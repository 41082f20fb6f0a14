"""Confidence intervals for scores and for paired candidate − baseline differences.

Every function here takes numpy arrays and broadcasts, so the gate computes one comparison with
the same code that the gate simulation runs on thousands of simulated comparisons at once.

- :func:`wilson_bounds`: score interval of a proportion (one model's accuracy).
- :func:`paired_proportion_interval`: Newcombe's hybrid score interval (1998, method 10) for
  the difference of two *paired* proportions — both models answered the same items, so the
  interval uses the 2×2 table of agreements and disagreements, not two independent samples.
  It is the closed-form interval recommended for non-inferiority of paired binary outcomes
  (McNemar's setting); unlike the Wald interval it keeps its coverage at small n and at
  accuracies near 0 or 1.
- :func:`paired_bootstrap`: percentile interval of a corpus-level metric's difference (micro-F1,
  macro-F1, ROUGE, ...) by resampling items with replacement, the same items for both models,
  and recomputing the metric on each resample.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from statistics import NormalDist
from typing import Any

import numpy as np

#: Resamples are drawn in blocks of this many so memory stays bounded on large item sets.
_BLOCK = 128


def z_value(confidence: float) -> float:
    """The two-sided normal quantile for ``confidence`` (1.96 for 0.95)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    return NormalDist().inv_cdf(0.5 + confidence / 2.0)


def wilson_bounds(successes: Any, n: Any, z: float) -> tuple[np.ndarray, np.ndarray]:
    """Wilson score interval of ``successes / n`` (arrays broadcast; ``n`` must be > 0)."""
    k = np.asarray(successes, dtype=float)
    n = np.asarray(n, dtype=float)
    p = k / n
    z2 = z * z
    denominator = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denominator
    half = z * np.sqrt(np.maximum(p * (1.0 - p) / n + z2 / (4.0 * n * n), 0.0)) / denominator
    return np.clip(centre - half, 0.0, 1.0), np.clip(centre + half, 0.0, 1.0)


def paired_proportion_interval(
    both: Any, only_candidate: Any, only_baseline: Any, neither: Any, confidence: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Newcombe's method-10 interval for ``p_candidate − p_baseline`` on paired 0/1 outcomes.

    The arguments are the 2×2 counts: items both models got right, only the candidate, only
    the baseline, neither. Returns ``(difference, low, high)``. The correlation between the two
    models' outcomes (phi, with Newcombe's continuity correction) narrows the interval when
    the models tend to agree, which is what makes a paired comparison more powerful than two
    independent intervals.
    """
    a, b, c, d = (np.asarray(x, dtype=float) for x in (both, only_candidate, only_baseline, neither))
    n = a + b + c + d
    z = z_value(confidence)
    p1, p2 = (a + b) / n, (a + c) / n
    l1, u1 = wilson_bounds(a + b, n, z)
    l2, u2 = wilson_bounds(a + c, n, z)
    cross = a * d - b * c
    corrected = np.where(cross > n / 2.0, cross - n / 2.0, np.where(cross >= 0.0, 0.0, cross))
    margins = (a + b) * (c + d) * (a + c) * (b + d)
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = np.where(margins > 0, corrected / np.sqrt(np.where(margins > 0, margins, 1.0)), 0.0)
    diff = p1 - p2
    delta = np.sqrt(np.maximum((p1 - l1) ** 2 - 2 * phi * (p1 - l1) * (u2 - p2) + (u2 - p2) ** 2, 0.0))
    epsilon = np.sqrt(np.maximum((u1 - p1) ** 2 - 2 * phi * (u1 - p1) * (p2 - l2) + (p2 - l2) ** 2, 0.0))
    return diff, np.maximum(diff - delta, -1.0), np.minimum(diff + epsilon, 1.0)


def paired_difference_se(only_candidate: Any, only_baseline: Any, n: Any) -> np.ndarray:
    """Standard error of a paired proportion difference (used to judge whether a test had power)."""
    b, c, n = (np.asarray(x, dtype=float) for x in (only_candidate, only_baseline, n))
    variance = ((b + c) / n - ((b - c) / n) ** 2) / n
    return np.sqrt(np.maximum(variance, 0.0))


@dataclass(frozen=True)
class BootstrapResult:
    """A paired bootstrap of ``metric(candidate) − metric(baseline)`` over items.

    ``low``/``high`` bound the difference at ``confidence``; ``candidate_ci``/``baseline_ci`` are
    the same resamples' intervals of each model's own metric; ``se`` is the resampled
    differences' standard deviation.
    """

    difference: float
    low: float
    high: float
    se: float
    candidate_ci: tuple[float, float]
    baseline_ci: tuple[float, float]
    n_resamples: int


def percentile_interval(values: np.ndarray, confidence: float, axis: int = -1) -> tuple[Any, Any]:
    tail = (1.0 - confidence) / 2.0
    return np.quantile(values, tail, axis=axis), np.quantile(values, 1.0 - tail, axis=axis)


def bootstrap_sum_draws(matrix: np.ndarray, n_resamples: int, seed: int) -> np.ndarray:
    """Column sums of ``matrix`` over items resampled with replacement, ``n_resamples`` times.

    ``matrix`` is ``(n_items, ...)``: per-item additive statistics, any trailing shape (the gate
    simulation stacks thousands of simulated comparisons there). Returns ``(n_resamples, ...)``.
    Each resample is ``n_items`` draws with replacement, expressed as per-item counts so the sum
    is one matrix product; resampling both models' columns together keeps the pairing.
    """
    n_items = matrix.shape[0]
    if n_items < 1:
        raise ValueError("cannot resample zero items")
    if n_resamples < 1:
        raise ValueError("need at least one resample")
    flat = np.asarray(matrix, dtype=float).reshape(n_items, -1)
    out = np.empty((n_resamples, flat.shape[1]))
    rng = np.random.default_rng(seed)
    for start in range(0, n_resamples, _BLOCK):
        count = min(_BLOCK, n_resamples - start)
        draws = rng.integers(0, n_items, size=(count, n_items)) + (np.arange(count) * n_items)[:, None]
        weights = np.bincount(draws.ravel(), minlength=count * n_items).reshape(count, n_items)
        out[start : start + count] = weights @ flat
    return out.reshape((n_resamples, *matrix.shape[1:]))


def paired_bootstrap(
    candidate: Sequence[Any],
    baseline: Sequence[Any],
    *,
    confidence: float,
    n_resamples: int,
    seed: int,
    metric: Callable[[Sequence[Any]], float] | None = None,
    sums: tuple[np.ndarray, np.ndarray, Callable[[np.ndarray], np.ndarray]] | None = None,
) -> BootstrapResult:
    """Paired percentile bootstrap of a metric's difference; items are resampled, not models.

    Give either ``metric`` (recomputed from the resampled per-item records: any corpus-level
    definition) or ``sums`` = ``(candidate_matrix, baseline_matrix, from_sums)``: per-item
    additive statistics ``(n_items, k)`` and a function from their column sums ``(..., k)``
    to the metric. The second form is vectorised (micro-F1 from true-positive / predicted /
    gold counts, accuracy from correct counts) and gives the same distribution as the first.
    """
    if len(candidate) != len(baseline):
        raise ValueError(f"paired bootstrap needs the same items: {len(candidate)} vs {len(baseline)}")
    if not len(candidate):
        raise ValueError("paired bootstrap of zero items is undefined")
    if (metric is None) == (sums is None):
        raise ValueError("give exactly one of metric or sums")
    if sums is not None:
        cand_matrix, base_matrix, from_sums = sums
        k = cand_matrix.shape[1]
        draws = bootstrap_sum_draws(np.concatenate([cand_matrix, base_matrix], axis=1), n_resamples, seed)
        cand_values, base_values = from_sums(draws[:, :k]), from_sums(draws[:, k:])
        cand_full = float(from_sums(cand_matrix.sum(axis=0)[None, :])[0])
        base_full = float(from_sums(base_matrix.sum(axis=0)[None, :])[0])
    else:
        n_items = len(candidate)
        rng = np.random.default_rng(seed)
        cand_values, base_values = np.empty(n_resamples), np.empty(n_resamples)
        for row in range(n_resamples):
            indices = rng.integers(0, n_items, size=n_items)
            cand_values[row] = metric([candidate[i] for i in indices])
            base_values[row] = metric([baseline[i] for i in indices])
        cand_full, base_full = float(metric(list(candidate))), float(metric(list(baseline)))
    differences = cand_values - base_values
    low, high = percentile_interval(differences, confidence)
    cand_low, cand_high = percentile_interval(cand_values, confidence)
    base_low, base_high = percentile_interval(base_values, confidence)
    return BootstrapResult(
        difference=cand_full - base_full,
        low=float(low),
        high=float(high),
        se=float(differences.std(ddof=1)) if n_resamples > 1 else 0.0,
        candidate_ci=(float(cand_low), float(cand_high)),
        baseline_ci=(float(base_low), float(base_high)),
        n_resamples=n_resamples,
    )


def bootstrap_mean_interval(
    values: Sequence[float], *, confidence: float, n_resamples: int, seed: int
) -> tuple[float, float]:
    """Percentile bootstrap interval of a mean (bias probes' shifts and attitude scores)."""
    array = np.asarray(values, dtype=float)
    if array.size == 0:
        raise ValueError("cannot bootstrap zero values")
    means = bootstrap_sum_draws(array[:, None], n_resamples, seed)[:, 0] / array.size
    low, high = percentile_interval(means, confidence)
    return float(low), float(high)
