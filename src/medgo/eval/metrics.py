"""Official metric definitions as pure functions.

CBLUE's leaderboard scores extraction tasks (CMeEE, CMeIE, CHIP-CDN) by micro-F1 on exact tuple
matches, CHIP-STS/CHIP-CTC by macro-F1 and the KUAKE tasks by accuracy; multiple-choice
accuracy comes with a Wilson interval because eval sets are small (paired comparisons of candidate
and baseline live in :mod:`medgo.eval.stats` and :mod:`medgo.eval.gate`). No sklearn dependency at
run time: the definitions are short; the tests pin them to hand-computed values and to sklearn.

Undefined ratios (no predictions, no gold) are 0.0, as sklearn does with ``zero_division=0``.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable, Sequence


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
