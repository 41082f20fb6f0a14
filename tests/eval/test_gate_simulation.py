"""The gate on simulated models: equal models pass, clearly worse ones do not, small samples are inconclusive.

Runs the gate's own interval and decision functions (vectorised) on thousands of simulated paired
comparisons, at the gate's default settings (margin 0.03, 95 % intervals, power rule 0.8,
min_items 100) and at the evaluation sizes the pipeline is designed for:

=================  ========  ====================================================================
metric             items     simulated models
=================  ========  ====================================================================
MCQ accuracy       10,000    accuracy 0.75 (CMB-test has 11,200 questions, MedGo's set 15k);
                             errors independent, or driven by item difficulty (Beta, mean 0.75)
safety safe_rate   3,000     safe rate 0.92, the same two error models
CMeEE micro-F1     2,000     1 + Poisson(2) entities per sentence, recall 0.7 with per-entity
                             difficulty, Poisson(0.5) false positives (paired bootstrap, 1,000
                             resamples: the interval the gate uses for corpus-level metrics)
=================  ========  ====================================================================

"Worse by twice the margin" is 0.06 below in the population. Fixed seeds: the rates are exact
for this numpy, and the assertions leave room for a different random stream.
"""

from __future__ import annotations

import numpy as np
import pytest

from medgo.config import EvalConfig, GateConfig
from medgo.eval.gate import noninferiority_status, task_role
from medgo.eval.runner import task_names
from medgo.eval.stats import (
    bootstrap_sum_draws,
    paired_difference_se,
    paired_proportion_interval,
    percentile_interval,
)

GATE = GateConfig()
PASS, FAIL, INCONCLUSIVE = 0, 1, 2
SIMS = 2000


def decide(low, high, se, n):
    return noninferiority_status(
        low,
        high,
        se,
        np.full(np.shape(low), n),
        margin=GATE.margin,
        min_items=GATE.min_items,
        confidence=GATE.confidence,
        power=GATE.power,
    )


def paired_binary(rng, n, p_candidate, p_baseline, difficulty, sims=SIMS):
    """Per simulated comparison, the 2×2 counts of paired 0/1 outcomes.

    ``difficulty`` None: every item is answered correctly with the model's own probability,
    independently. A number: each item has a latent probability ~ Beta with that concentration
    (mean p_baseline), shared by both models, so they tend to fail the same hard items.
    """
    if difficulty is None:
        q = np.full((sims, n), p_baseline)
    else:
        q = rng.beta(p_baseline * difficulty, (1 - p_baseline) * difficulty, size=(sims, n))
    cand = rng.random((sims, n)) < np.clip(q + (p_candidate - p_baseline), 0, 1)
    base = rng.random((sims, n)) < q
    both, only_c, only_b = (cand & base).sum(1), (cand & ~base).sum(1), (~cand & base).sum(1)
    return both, only_c, only_b, n - both - only_c - only_b


def binary_gate(counts, n):
    both, only_c, only_b, neither = counts
    _, low, high = paired_proportion_interval(both, only_c, only_b, neither, GATE.confidence)
    return decide(low, high, paired_difference_se(only_c, only_b, n), n)


def rates(status) -> dict[str, float]:
    return {
        name: float(np.mean(status == code))
        for name, code in (("pass", PASS), ("fail", FAIL), ("inconclusive", INCONCLUSIVE))
    }


BINARY_DESIGNS = [
    pytest.param("mcq", 10_000, 0.75, None, id="mcq-independent"),
    pytest.param("mcq", 10_000, 0.75, 4.0, id="mcq-difficulty"),
    pytest.param("safety", 3_000, 0.92, None, id="safety-independent"),
    pytest.param("safety", 3_000, 0.92, 4.0, id="safety-difficulty"),
]


@pytest.mark.parametrize(("metric", "n", "p", "difficulty"), BINARY_DESIGNS)
def test_equal_models_pass_non_inferiority(metric, n, p, difficulty):
    rng = np.random.default_rng(11)
    result = rates(binary_gate(paired_binary(rng, n, p, p, difficulty), n))
    print(f"{metric} n={n} equal models: {result}")
    assert result["pass"] >= 0.95


@pytest.mark.parametrize(("metric", "n", "p", "difficulty"), BINARY_DESIGNS)
def test_a_model_worse_by_twice_the_margin_fails(metric, n, p, difficulty):
    rng = np.random.default_rng(12)
    result = rates(binary_gate(paired_binary(rng, n, p - 2 * GATE.margin, p, difficulty), n))
    print(f"{metric} n={n} worse by {2 * GATE.margin}: {result}")
    assert result["fail"] >= 0.80
    assert result["pass"] <= 0.01


@pytest.mark.parametrize("n", [24, 60])
def test_small_samples_are_inconclusive_never_a_pass(n):
    """The old point-estimate gate failed equal models 39 % of the time at 24 items; this one says it cannot tell."""
    rng = np.random.default_rng(13)
    equal = rates(binary_gate(paired_binary(rng, n, 0.75, 0.75, None), n))
    worse = rates(binary_gate(paired_binary(rng, n, 0.69, 0.75, None), n))
    print(f"n={n}: equal {equal}, worse {worse}")
    assert equal["inconclusive"] == 1.0 and worse["pass"] == 0.0


def test_secondary_tasks_rarely_fail_equal_models_together():
    """Every secondary task of the default task list (all of CBLUE and over-refusal), 2,000 items each,
    Bonferroni-adjusted: equal models trip the regression rule on any of them rarely."""
    rng = np.random.default_rng(14)
    secondary = [name for name in task_names(EvalConfig()) if task_role(name, GATE) == "secondary"]
    assert len(secondary) >= 18
    k, n = len(secondary), 2_000
    level = 1 - (1 - GATE.confidence) / k
    tripped = np.zeros(SIMS, dtype=bool)
    for _ in range(k):
        both, only_c, only_b, neither = paired_binary(rng, n, 0.85, 0.85, None)
        _, low, high = paired_proportion_interval(both, only_c, only_b, neither, level)
        tripped |= high < -GATE.margin
    assert float(tripped.mean()) <= (1 - GATE.confidence) / 2


# ------------------------------------------------------------------------- corpus-level micro-F1

MAX_ENTITIES = 10


def ner_population(rng, sims, n):
    """Gold entity counts and per-entity difficulty shared by both models."""
    gold = np.minimum(1 + rng.poisson(2.0, size=(sims, n)), MAX_ENTITIES)
    difficulty = rng.beta(0.7 * 4, 0.3 * 4, size=(sims, n, MAX_ENTITIES))
    return gold, difficulty


def ner_counts(rng, gold, difficulty, recall_shift):
    """Per sentence (tp, predicted, gold) for a model whose detection probability is shifted."""
    found = rng.random(difficulty.shape) < np.clip(difficulty + recall_shift, 0, 1)
    present = np.arange(MAX_ENTITIES) < gold[..., None]
    tp = (found & present).sum(-1)
    predicted = tp + rng.poisson(0.5, size=gold.shape)
    return np.stack([tp, predicted, gold], axis=-1).astype(float)


def micro_f1_from_sums(sums):
    return 2 * sums[..., 0] / np.maximum(sums[..., 1] + sums[..., 2], 1)


def shift_worse_by(target, rng):
    """The recall shift whose population micro-F1 is ``target`` below the baseline's (bisection)."""
    gold, difficulty = ner_population(rng, 1, 200_000)
    base = micro_f1_from_sums(ner_counts(rng, gold, difficulty, 0.0).sum(1))[0]
    low, high = -0.3, 0.0
    for _ in range(30):
        mid = (low + high) / 2
        drop = (
            base - micro_f1_from_sums(ner_counts(np.random.default_rng(1), gold, difficulty, mid).sum(1))[0]
        )
        low, high = (mid, high) if drop > target else (low, mid)
    return high


def bootstrap_gate(cand, base, n):
    """The gate's paired bootstrap, with every simulated comparison in the trailing axis."""
    stacked = np.concatenate([cand, base], axis=-1).transpose(1, 0, 2)  # (items, sims, 6)
    draws = bootstrap_sum_draws(stacked, 1000, seed=21)
    differences = micro_f1_from_sums(draws[..., :3]) - micro_f1_from_sums(draws[..., 3:])
    low, high = percentile_interval(differences, GATE.confidence, axis=0)
    return decide(low, high, differences.std(axis=0, ddof=1), n)


def test_corpus_micro_f1_by_paired_bootstrap():
    rng = np.random.default_rng(20)
    n, sims = 2_000, 300
    gold, difficulty = ner_population(rng, sims, n)
    base = ner_counts(rng, gold, difficulty, 0.0)
    equal = rates(bootstrap_gate(ner_counts(rng, gold, difficulty, 0.0), base, n))
    shift = shift_worse_by(2 * GATE.margin, np.random.default_rng(22))
    worse_counts = ner_counts(rng, gold, difficulty, shift)
    realised = float(np.mean(micro_f1_from_sums(worse_counts.sum(1)) - micro_f1_from_sums(base.sum(1))))
    worse = rates(bootstrap_gate(worse_counts, base, n))
    print(f"micro-F1 n={n}: equal {equal}; worse by {-realised:.3f}: {worse}")
    assert realised == pytest.approx(-2 * GATE.margin, abs=0.005)
    assert equal["pass"] >= 0.95
    assert worse["fail"] >= 0.80 and worse["pass"] <= 0.01
