"""The deployment gate: candidate against baseline on the same items, decided by statistics.

A point-estimate gate is decided by noise: two equally good models differ on a finite item set,
and with several tasks one of them is almost always "worse". This gate instead asks, per
metric, what the items can support.

**The interval.** For each task, the difference candidate − baseline gets a two-sided interval
at ``gate.confidence`` from the paired items:

- metrics that are the mean of 0/1 item outcomes (MCQ accuracy, safe rate, over-refusal rate):
  Newcombe's paired score interval (:func:`medgo.eval.stats.paired_proportion_interval`), the
  closed-form interval for non-inferiority of paired proportions (McNemar's setting);
- every other metric (micro-F1, macro-F1, ROUGE, means of graded scores): the paired percentile
  bootstrap over items, ``gate.n_bootstrap`` resamples seeded from ``gate.seed``, recomputing the
  task's official metric on each resample.

**The rules, and how several tasks are handled.** ``improvement`` is the difference signed so
that positive is better (over-refusal and bias measures are lower-is-better).

1. *Floors*: MCQ accuracy and the safety metric must reach ``min_mcq_accuracy`` /
   ``min_safety_rate`` (point estimates; their intervals are reported).
2. *Primary tasks* (``gate.primary_tasks``, pre-declared): non-inferiority. Pass when the
   improvement's lower bound is above −``margin``; fail when its upper bound is below −margin,
   or when the interval spans −margin although the test had at least ``gate.power`` to decide;
   otherwise (too wide to decide) inconclusive. Requiring *every* primary to pass is an
   intersection–union test, which keeps the chance of passing an inferior candidate at the
   one-sided level (1 − confidence) / 2 without any correction.
3. *Secondary tasks* (every other gated task): fail only on a demonstrated regression, when the
   upper bound is below −margin, with Bonferroni-adjusted intervals at
   1 − (1 − confidence) / k over the k secondary tasks, so that equal models trip this rule on
   any of them with probability below (1 − confidence) / 2 in total.
4. *Completeness*: a task whose requests failed (an endpoint outage) was not evaluated, and
   fails the gate naming its items.

Any comparison with fewer than ``gate.min_items`` items is inconclusive. Superiority (lower
bound above 0) is reported per task, never needed. The gate's decision is ``pass`` only when
every rule passes; ``inconclusive`` and ``fail`` both block deployment (the pipeline's
``dsl.If`` sees a single bool).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from medgo.config import GateConfig
from medgo.errors import MedgoError
from medgo.eval.stats import (
    paired_bootstrap,
    paired_difference_se,
    paired_proportion_interval,
    wilson_bounds,
    z_value,
)
from medgo.eval.tasks import get_task

PASS, FAIL, INCONCLUSIVE = "pass", "fail", "inconclusive"
_STATUS = (PASS, FAIL, INCONCLUSIVE)
#: Rounding slack so that a bound of exactly -margin does not flip on float error.
_TOLERANCE = 1e-9
#: The tasks the floor rules read, and the GateConfig field of each.
FLOORS = (("mcq", "min_mcq_accuracy"), ("safety", "min_safety_rate"))


def noninferiority_status(
    low: Any,
    high: Any,
    se: Any,
    n: Any,
    *,
    margin: float,
    min_items: int,
    confidence: float,
    power: float,
) -> np.ndarray:
    """Per comparison: 0 pass, 1 fail, 2 inconclusive, for improvement intervals ``[low, high]``.

    Vectorised, so :mod:`tests.eval.test_gate_simulation` runs the gate's own rule on
    thousands of simulated comparisons.
    """
    low, high, se, n = (np.asarray(x, dtype=float) for x in (low, high, se, n))
    from statistics import NormalDist

    needed_z = z_value(confidence) + NormalDist().inv_cdf(power)
    underpowered = margin < needed_z * se
    status = np.where(high < -margin - _TOLERANCE, 1, np.where(underpowered, 2, 1))
    status = np.where(low > -margin - _TOLERANCE, 0, status)
    return np.where(n < min_items, 2, status)


def items_needed(n: int, se: float, *, margin: float, confidence: float, power: float) -> int:
    """Roughly how many items the comparison needs to decide at ``margin`` (SE shrinks as 1/√n)."""
    from statistics import NormalDist

    if margin <= 0 or se <= 0:
        return n
    needed_z = z_value(confidence) + NormalDist().inv_cdf(power)
    return math.ceil(n * (needed_z * se / margin) ** 2)


def task_role(name: str, config: GateConfig) -> str:
    """primary (must be shown non-inferior), secondary (must not clearly regress) or report (not gated)."""
    if name in config.primary_tasks:
        return "primary"
    return "secondary" if get_task(name).gated else "report"


def _task_seed(seed: int, name: str) -> int:
    return (seed * 1_000_003 + zlib.crc32(name.encode("utf-8"))) % (2**32)


def _is_binary(values: Sequence[float] | None) -> bool:
    return values is not None and all(v in (0.0, 1.0) for v in values)


def _error_entry(name: str, candidate: dict, baseline: dict, role: str) -> dict[str, Any]:
    failures = {
        who: result["error"]
        for who, result in (("candidate", candidate), ("baseline", baseline))
        if "error" in result
    }
    return {
        "status": "error",
        "role": role,
        "metric": candidate.get("metric") or baseline.get("metric"),
        "failures": failures,
    }


def compare_task(
    name: str,
    candidate: dict[str, Any],
    baseline: dict[str, Any],
    *,
    role: str,
    confidence: float,
    config: GateConfig,
) -> dict[str, Any]:
    """One task's paired comparison: both values, the difference with its interval, and more."""
    if "error" in candidate or "error" in baseline:
        return _error_entry(name, candidate, baseline, role)
    task = get_task(name)
    base_items = {item["id"]: item for item in baseline["items"]}
    if set(base_items) != {item["id"] for item in candidate["items"]}:
        raise MedgoError(f"task {name}: candidate and baseline were evaluated on different items")
    if candidate["metric"] != baseline["metric"]:
        raise MedgoError(
            f"task {name}: candidate scored by {candidate['metric']}, baseline by {baseline['metric']}"
        )
    cand_items = candidate["items"]
    paired = [base_items[item["id"]] for item in cand_items]
    cand_stats = [item["stats"] for item in cand_items]
    base_stats = [item["stats"] for item in paired]
    n = len(cand_items)
    cand_values, base_values = task.item_values(cand_stats), task.item_values(base_stats)
    if _is_binary(cand_values) and _is_binary(base_values):
        c, b = np.asarray(cand_values), np.asarray(base_values)
        both, only_c, only_b = int((c * b).sum()), int((c * (1 - b)).sum()), int(((1 - c) * b).sum())
        neither = n - both - only_c - only_b
        delta, low, high = (
            float(x) for x in paired_proportion_interval(both, only_c, only_b, neither, confidence)
        )
        se = float(paired_difference_se(only_c, only_b, n))
        z = z_value(confidence)
        cand_ci = [float(x) for x in wilson_bounds(both + only_c, n, z)]
        base_ci = [float(x) for x in wilson_bounds(both + only_b, n, z)]
        method = "newcombe_paired_score"
        table = {"both": both, "only_candidate": only_c, "only_baseline": only_b, "neither": neither}
    else:
        cand_sums, base_sums = task.sufficient_statistics(cand_stats), task.sufficient_statistics(base_stats)
        common = {
            "confidence": confidence,
            "n_resamples": config.n_bootstrap,
            "seed": _task_seed(config.seed, name),
        }
        if cand_sums is not None and base_sums is not None:
            boot = paired_bootstrap(
                cand_stats, base_stats, sums=(cand_sums[0], base_sums[0], cand_sums[1]), **common
            )
        else:
            boot = paired_bootstrap(cand_stats, base_stats, metric=task.aggregate, **common)
        delta, low, high, se = boot.difference, boot.low, boot.high, boot.se
        cand_ci, base_ci = list(boot.candidate_ci), list(boot.baseline_ci)
        method = "paired_bootstrap"
        table = None
    sign = 1.0 if task.higher_is_better else -1.0
    improvement = [sign * low, sign * high] if sign > 0 else [sign * high, sign * low]
    entry = {
        "status": "ok",
        "role": role,
        "metric": candidate["metric"],
        "higher_is_better": task.higher_is_better,
        "candidate": candidate["value"],
        "baseline": baseline["value"],
        "delta": candidate["value"] - baseline["value"],
        "interval": [low, high],
        "improvement": sign * delta,
        "improvement_interval": improvement,
        "confidence": confidence,
        "se": se,
        "method": method,
        "candidate_interval": cand_ci,
        "baseline_interval": base_ci,
        "superior": improvement[0] > 0,
        "n": n,
        "secondary": {
            key: {
                "candidate": value,
                "baseline": baseline["secondary"].get(key),
                "delta": value - baseline["secondary"][key] if key in baseline["secondary"] else None,
            }
            for key, value in candidate["secondary"].items()
        },
        "regressed_items": [
            c["id"] for c, b in zip(cand_items, paired, strict=True) if c["score"] < b["score"]
        ][:10],
    }
    if table is not None:
        entry["paired_table"] = table
    return entry


def compare(
    candidate: dict[str, Any], baseline: dict[str, Any], config: GateConfig | None = None
) -> dict[str, Any]:
    """Per task: both values, candidate − baseline with its interval, the task's gate role.

    Both results must cover the same tasks and, per task, the same items; anything else is not
    a paired comparison. Primary and report-only tasks get intervals at ``config.confidence``,
    secondary tasks Bonferroni-adjusted ones (see the module docstring).
    """
    config = config or GateConfig()
    cand_tasks, base_tasks = candidate["tasks"], baseline["tasks"]
    if set(cand_tasks) != set(base_tasks):
        raise MedgoError(
            f"candidate and baseline were evaluated on different tasks: "
            f"{sorted(cand_tasks)} vs {sorted(base_tasks)}"
        )
    roles = {name: task_role(name, config) for name in cand_tasks}
    n_secondary = sum(1 for role in roles.values() if role == "secondary")
    secondary_confidence = 1.0 - (1.0 - config.confidence) / max(1, n_secondary)
    tasks = {
        name: compare_task(
            name,
            cand_tasks[name],
            base_tasks[name],
            role=roles[name],
            confidence=secondary_confidence if roles[name] == "secondary" else config.confidence,
            config=config,
        )
        for name in cand_tasks
    }
    return {
        "confidence": config.confidence,
        "secondary_confidence": secondary_confidence,
        "n_bootstrap": config.n_bootstrap,
        "seed": config.seed,
        "tasks": tasks,
    }


def _rule(
    rule: str,
    *,
    task: str,
    kind: str,
    status: str,
    value: float | None,
    threshold: float | None,
    explanation: str,
    interval: list[float] | None = None,
    confidence: float | None = None,
    n: int | None = None,
) -> dict[str, Any]:
    return {
        "rule": rule,
        "task": task,
        "kind": kind,
        "status": status,
        "passed": status == PASS,
        "value": value,
        "threshold": threshold,
        "interval": interval,
        "confidence": confidence,
        "n": n,
        "explanation": explanation,
    }


def _fmt(interval: Sequence[float]) -> str:
    return f"[{interval[0]:+.4f}, {interval[1]:+.4f}]"


def _floor_rule(
    comparison: dict[str, Any], task: str, setting: str, threshold: float
) -> dict[str, Any] | None:
    if threshold <= 0:
        return None  # no floor configured
    entry = comparison["tasks"].get(task)
    rule = f"{task} >= gate.{setting}"
    if entry is None or entry.get("status") == "error":
        why = "was not evaluated" if entry is None else "could not be evaluated (failed requests)"
        return _rule(
            rule,
            task=task,
            kind="floor",
            status=FAIL,
            value=None,
            threshold=threshold,
            explanation=f"{task} {why} but gate.{setting} is {threshold}",
        )
    value = entry["candidate"]
    passed = value >= threshold - _TOLERANCE
    return _rule(
        f"{task}.{entry['metric']} >= gate.{setting}",
        task=task,
        kind="floor",
        status=PASS if passed else FAIL,
        value=value,
        threshold=threshold,
        interval=entry.get("candidate_interval"),
        confidence=entry.get("confidence"),
        n=entry.get("n"),
        explanation=f"{task}.{entry['metric']} {value:.4f} {'>=' if passed else '<'} {threshold:.4f}",
    )


def _primary_rule(name: str, entry: dict[str, Any], config: GateConfig) -> dict[str, Any]:
    low, high = entry["improvement_interval"]
    metric, n, level = entry["metric"], entry["n"], entry["confidence"]
    code = int(
        noninferiority_status(
            low,
            high,
            entry["se"],
            n,
            margin=config.margin,
            min_items=config.min_items,
            confidence=level,
            power=config.power,
        )
    )
    status = _STATUS[code]
    head = (
        f"{name}.{metric}: improvement {entry['improvement']:+.4f}, "
        f"{level:.0%} CI {_fmt(entry['improvement_interval'])} ({n} items)"
    )
    if n < config.min_items:
        why = f"inconclusive: {n} items < gate.min_items {config.min_items}"
    elif status == PASS:
        why = f"non-inferior: lower bound {low:+.4f} > -{config.margin:g}"
        if entry["superior"]:
            why += "; superior (lower bound > 0)"
    elif high < -config.margin:
        why = f"inferior: upper bound {high:+.4f} < -{config.margin:g}"
    elif status == INCONCLUSIVE:
        needed = items_needed(n, entry["se"], margin=config.margin, confidence=level, power=config.power)
        why = (
            f"inconclusive: the interval spans -{config.margin:g} and is too wide to decide "
            f"(about {needed} items needed)"
        )
    else:
        why = f"not shown non-inferior: lower bound {low:+.4f} <= -{config.margin:g}"
    return _margin_rule(
        f"{name}.{metric} non-inferior to baseline within gate.margin",
        "non_inferiority",
        name,
        entry,
        config,
        status,
        f"{head}; {why}",
    )


def _secondary_rule(name: str, entry: dict[str, Any], config: GateConfig) -> dict[str, Any]:
    low, high = entry["improvement_interval"]
    metric, n, level = entry["metric"], entry["n"], entry["confidence"]
    head = (
        f"{name}.{metric}: improvement {entry['improvement']:+.4f}, "
        f"{level:.2%} CI (Bonferroni) {_fmt(entry['improvement_interval'])} ({n} items)"
    )
    if n < config.min_items:
        status, why = INCONCLUSIVE, f"inconclusive: {n} items < gate.min_items {config.min_items}"
    elif high < -config.margin - _TOLERANCE:
        status, why = FAIL, f"significant regression: upper bound {high:+.4f} < -{config.margin:g}"
    else:
        status, why = PASS, f"no significant regression beyond -{config.margin:g}"
    return _margin_rule(
        f"{name}.{metric} no significant regression beyond gate.margin",
        "no_regression",
        name,
        entry,
        config,
        status,
        f"{head}; {why}",
    )


def _margin_rule(
    title: str,
    kind: str,
    name: str,
    entry: dict[str, Any],
    config: GateConfig,
    status: str,
    explanation: str,
) -> dict[str, Any]:
    """A rule on the improvement's interval against ``-gate.margin``."""
    return _rule(
        title,
        task=name,
        kind=kind,
        status=status,
        value=entry["improvement"],
        threshold=-config.margin,
        interval=entry["improvement_interval"],
        confidence=entry["confidence"],
        n=entry["n"],
        explanation=explanation,
    )


def _complete_rule(name: str, entry: dict[str, Any]) -> dict[str, Any]:
    parts = []
    for who, error in entry["failures"].items():
        ids = [f["item_id"] or f"request {f['position']}" for f in error.get("failures", [])]
        shown = ", ".join(ids[:10]) + ("…" if len(ids) > 10 else "")
        parts.append(f"{who}: {len(ids)} failed requests ({shown}): {error.get('message', '')}")
    return _rule(
        f"{name} evaluated on every item",
        task=name,
        kind="complete",
        status=FAIL,
        value=None,
        threshold=None,
        explanation=f"{name} was not evaluated; " + "; ".join(parts),
    )


def gate(comparison: dict[str, Any], config: GateConfig) -> dict[str, Any]:
    """Decide whether the candidate may be deployed; ``message`` names every rule that did not pass.

    Returns ``{"passed", "decision", "rules", "message", "method"}``; each rule has ``rule``,
    ``task``, ``kind`` (floor, non_inferiority, no_regression, complete), ``status``,
    ``passed``, ``value``, ``threshold``, ``interval`` and an ``explanation``.
    """
    rules = [
        r
        for r in (
            _floor_rule(comparison, task, setting, getattr(config, setting)) for task, setting in FLOORS
        )
        if r is not None
    ]
    for name, entry in comparison["tasks"].items():
        role = entry.get("role") or task_role(name, config)
        if entry.get("status") == "error":
            rules.append(_complete_rule(name, entry))
        elif role == "primary":
            rules.append(_primary_rule(name, entry, config))
        elif role == "secondary":
            rules.append(_secondary_rule(name, entry, config))
    for name in config.primary_tasks:
        if name not in comparison["tasks"]:
            rules.append(
                _rule(
                    f"{name} non-inferior to baseline within gate.margin",
                    task=name,
                    kind="non_inferiority",
                    status=FAIL,
                    value=None,
                    threshold=-config.margin,
                    explanation=f"primary task {name} was not evaluated (gate.primary_tasks)",
                )
            )
    failed = [r for r in rules if r["status"] == FAIL]
    inconclusive = [r for r in rules if r["status"] == INCONCLUSIVE]
    decision = FAIL if failed else INCONCLUSIVE if inconclusive else PASS
    if decision == PASS:
        message = f"gate passed: all {len(rules)} rules met"
    else:
        message = f"gate {'failed' if failed else 'inconclusive'}: " + "; ".join(
            r["explanation"] for r in failed + inconclusive
        )
    return {
        "passed": decision == PASS,
        "decision": decision,
        "rules": rules,
        "message": message,
        "method": {
            "margin": config.margin,
            "confidence": config.confidence,
            "secondary_confidence": comparison.get("secondary_confidence"),
            "primary_tasks": list(config.primary_tasks),
            "min_items": config.min_items,
            "power": config.power,
            "n_bootstrap": config.n_bootstrap,
            "seed": config.seed,
        },
    }
