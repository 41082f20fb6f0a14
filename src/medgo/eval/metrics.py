"""Official metric definitions as pure functions.

CBLUE's leaderboard scores extraction tasks (CMeEE, CMeIE, CHIP-CDN) by micro-F1 on exact tuple
matches, CHIP-STS/CHIP-CTC by macro-F1 and the KUAKE tasks by accuracy; multiple-choice
accuracy comes with a Wilson interval because eval sets are small; candidate vs baseline on the
same items is compared with a paired bootstrap. No sklearn dependency: the definitions are short
and the tests pin them to hand-computed values.

Undefined ratios (no predictions, no gold) are 0.0, as sklearn does with ``zero_division=0``.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Hashable, Iterable, Sequence
from typing import Any


def _ratio(num: float, den: float) -> float:
    return num / den if den else 0.0


def _f1(precision: float, recall: float) -> float:
    return _ratio(2 * precision * recall, precision + recall)


def prf_from_counts(true_positives: int, predicted: int, gold: int) -> dict[str, float]:
    """Precision, recall and F1 from summed counts (the micro average's definition)."""
    precision = _ratio(true_positives, predicted)
    recall = _ratio(true_positives, gold)
    return {"precision": precision, "recall": recall, "f1": _f1(precision, recall)}


def micro_f1(
    gold_sets: Sequence[Iterable[Hashable]], pred_sets: Sequence[Iterable[Hashable]]
) -> dict[str, float]:
    """Micro precision/recall/F1 over items, each a set of tuples that must match exactly.

    ``gold_sets[i]`` and ``pred_sets[i]`` are the tuples of item ``i`` (for CMeEE
    ``(start_idx, end_idx, type)``); a tuple repeated within an item counts once.
    """
    if len(gold_sets) != len(pred_sets):
        raise ValueError(f"gold has {len(gold_sets)} items, predictions {len(pred_sets)}")
    tp = n_pred = n_gold = 0
    for gold, pred in zip(gold_sets, pred_sets, strict=True):
        gold, pred = set(gold), set(pred)
        tp += len(gold & pred)
        n_pred += len(pred)
        n_gold += len(gold)
    return prf_from_counts(tp, n_pred, n_gold)


def macro_f1(
    gold: Sequence[Hashable], pred: Sequence[Hashable], labels: Sequence[Hashable] | None = None
) -> float:
    """Unweighted mean of per-class F1, as ``sklearn.metrics.f1_score(average="macro")``.

    Classes are ``labels`` when given (a prediction outside them is simply wrong: a false
    negative for its gold class, a false positive for none), otherwise every label seen in
    ``gold`` or ``pred``. A class with no gold and no predicted instance scores 0.
    """
    if len(gold) != len(pred):
        raise ValueError(f"gold has {len(gold)} items, predictions {len(pred)}")
    if not gold:
        raise ValueError("macro_f1 of zero items is undefined")
    classes = list(labels) if labels is not None else sorted(set(gold) | set(pred), key=str)
    scores = []
    for cls in classes:
        tp = sum(1 for g, p in zip(gold, pred, strict=True) if g == cls and p == cls)
        n_pred = sum(1 for p in pred if p == cls)
        n_gold = sum(1 for g in gold if g == cls)
        scores.append(prf_from_counts(tp, n_pred, n_gold)["f1"])
    return sum(scores) / len(scores)


def accuracy(correct: Sequence[bool | int | float]) -> float:
    """Share of items marked correct."""
    if not correct:
        raise ValueError("accuracy of zero items is undefined")
    return sum(float(c) for c in correct) / len(correct)


def wilson_interval(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval for ``k`` successes in ``n`` trials (95 % with the default ``z``).

    Preferred over the normal approximation because it stays inside [0, 1] and is honest at
    the small ``n`` and extreme rates of clinical MCQ subsets.
    """
    if n <= 0:
        raise ValueError("wilson_interval needs n > 0")
    if not 0 <= k <= n:
        raise ValueError(f"k={k} is outside [0, n={n}]")
    p = k / n
    z2 = z * z
    denom = 1 + z2 / n
    centre = (p + z2 / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / denom
    return max(0.0, centre - half), min(1.0, centre + half)


def _mean(values: Sequence[Any]) -> float:
    return sum(float(v) for v in values) / len(values)


def paired_bootstrap(
    cand_scores: Sequence[Any],
    base_scores: Sequence[Any],
    n: int = 1000,
    seed: int = 0,
    statistic: Callable[[Sequence[Any]], float] = _mean,
) -> float:
    """Share of bootstrap resamples in which the candidate does not beat the baseline.

    Items are resampled with replacement, the same indices for both systems (the pairing), and
    ``statistic`` (the mean by default; for corpus-level metrics such as micro-F1, the metric
    recomputed from the per-item records) is compared on each resample. A small value means
    the candidate's lead is unlikely to be an accident of which items were drawn; ties count
    against the candidate, so identical systems give 1.0.
    """
    if len(cand_scores) != len(base_scores):
        raise ValueError(f"paired bootstrap needs the same items: {len(cand_scores)} vs {len(base_scores)}")
    if not cand_scores:
        raise ValueError("paired bootstrap of zero items is undefined")
    if n <= 0:
        raise ValueError("paired bootstrap needs n > 0 resamples")
    rng = random.Random(seed)
    size = len(cand_scores)
    not_better = 0
    for _ in range(n):
        idx = [rng.randrange(size) for _ in range(size)]
        if statistic([cand_scores[i] for i in idx]) <= statistic([base_scores[i] for i in idx]):
            not_better += 1
    return not_better / n
