"""Evaluate a candidate and a baseline on the same items, compare them, and decide the gate.

The eval stage's outputs (one directory, local or ``s3://``):

- ``metrics.json``: both models' per-task results (with per-item records), the comparison
  (deltas and paired-bootstrap probabilities) and the gate decision;
- ``report.html``: the same, for people, self-contained;
- ``predictions/{candidate,baseline}/<task>.json``: parsed answers in each task's official layout;
- ``manifest.json``: file hashes, config and input lineage.
"""

from __future__ import annotations

import gc
import logging
import tempfile
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from medgo.config import EvalConfig, GateConfig
from medgo.errors import ConfigError, MedgoError
from medgo.eval.backends import Backend, LocalBackend
from medgo.eval.metrics import paired_bootstrap
from medgo.eval.report import render_report
from medgo.eval.tasks import EvalItem, get_task
from medgo.logs import fields
from medgo.storage import atomic_write_json, atomic_write_text, is_s3, localize, publish, write_manifest

log = logging.getLogger(__name__)

#: Rounding slack so that a drop of exactly ``max_regression`` passes despite float error.
_TOLERANCE = 1e-9


def load_eval_items(data_dir: str | Path, config: EvalConfig) -> dict[str, list[EvalItem]]:
    """Every configured task's items, validated before any model is loaded (fail fast)."""
    if not config.tasks:
        raise ConfigError("eval: no tasks configured")
    if len(set(config.tasks)) != len(config.tasks):
        raise ConfigError(f"eval: tasks listed twice: {config.tasks}")
    root = localize(data_dir, what="evaluation data")
    tasks = [get_task(name) for name in config.tasks]
    return {task.name: task.load(root, config.max_items_per_task) for task in tasks}


def evaluate_items(
    backend: Backend,
    items_by_task: Mapping[str, list[EvalItem]],
    config: EvalConfig,
    *,
    predictions_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Score ``backend`` on already loaded items; see :func:`evaluate_model` for the result."""
    results = {}
    for name, items in items_by_task.items():
        task = get_task(name)
        started = time.perf_counter()
        result = task.evaluate(backend, items, max_new_tokens=config.max_new_tokens)
        log.info(
            "task scored",
            extra=fields(
                task=name,
                model=backend.name,
                metric=result.metric,
                value=round(result.value, 4),
                n=len(result.outcomes),
                parse_failures=result.parse_failures,
                seconds=round(time.perf_counter() - started, 1),
            ),
        )
        if predictions_dir is not None:
            atomic_write_json(Path(predictions_dir) / f"{name}.json", result.predictions)
        results[name] = result.to_dict()
    return {"model": backend.name, "tasks": results}


def evaluate_model(
    backend: Backend, data_dir: str | Path, config: EvalConfig, *, predictions_dir: str | Path | None = None
) -> dict[str, Any]:
    """Score one model on every configured task.

    Returns ``{"model", "tasks": {task: {"metric", "value", "n", "parse_failures",
    "secondary", "worst", "items"}}}``; ``items`` holds each item's id, score and the stats the
    paired bootstrap needs. With ``predictions_dir``, parsed answers are written there per task.
    """
    return evaluate_items(backend, load_eval_items(data_dir, config), config, predictions_dir=predictions_dir)


def compare(
    candidate: dict[str, Any], baseline: dict[str, Any], *, n_bootstrap: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """Per task: both values, the delta, and the paired-bootstrap probability that the candidate
    is not better (resampling items and recomputing the official metric), plus secondary
    metric deltas and the ids of items the candidate got worse on.

    Both results must cover the same tasks and items; anything else is not a paired comparison.
    """
    cand_tasks, base_tasks = candidate["tasks"], baseline["tasks"]
    if set(cand_tasks) != set(base_tasks):
        raise MedgoError(
            f"candidate and baseline were evaluated on different tasks: "
            f"{sorted(cand_tasks)} vs {sorted(base_tasks)}"
        )
    tasks = {}
    for name, cand in cand_tasks.items():
        base = base_tasks[name]
        base_items = {item["id"]: item for item in base["items"]}
        if set(base_items) != {item["id"] for item in cand["items"]}:
            raise MedgoError(f"task {name}: candidate and baseline were evaluated on different items")
        paired_base = [base_items[item["id"]] for item in cand["items"]]
        aggregate = get_task(name).aggregate
        tasks[name] = {
            "metric": cand["metric"],
            "candidate": cand["value"],
            "baseline": base["value"],
            "delta": cand["value"] - base["value"],
            "p_candidate_not_better": paired_bootstrap(
                [item["stats"] for item in cand["items"]],
                [item["stats"] for item in paired_base],
                n=n_bootstrap,
                seed=seed,
                statistic=aggregate,
            ),
            "n": cand["n"],
            "secondary": {
                key: {
                    "candidate": value,
                    "baseline": base["secondary"].get(key),
                    "delta": value - base["secondary"][key] if key in base["secondary"] else None,
                }
                for key, value in cand["secondary"].items()
            },
            "regressed_items": [
                c["id"] for c, b in zip(cand["items"], paired_base, strict=True) if c["score"] < b["score"]
            ][:10],
        }
    return {"n_bootstrap": n_bootstrap, "seed": seed, "tasks": tasks}


def _rule(rule: str, value: float | None, threshold: float, passed: bool, explanation: str) -> dict[str, Any]:
    return {
        "rule": rule,
        "value": value,
        "threshold": threshold,
        "passed": passed,
        "explanation": explanation,
    }


def _minimum_rule(
    comparison: dict[str, Any], task: str, setting: str, threshold: float
) -> dict[str, Any] | None:
    """``<task>.<metric> >= gate.<setting>`` on the candidate; a missing task fails a non-zero minimum."""
    entry = comparison["tasks"].get(task)
    if entry is None:
        if threshold <= 0:
            return None
        return _rule(
            f"{task} >= gate.{setting}",
            None,
            threshold,
            False,
            f"{task} was not evaluated but gate.{setting} is {threshold}",
        )
    value = entry["candidate"]
    passed = value >= threshold - _TOLERANCE
    return _rule(
        f"{task}.{entry['metric']} >= gate.{setting}",
        value,
        threshold,
        passed,
        f"{task}.{entry['metric']} {value:.4f} {'>=' if passed else '<'} {threshold:.4f}",
    )


def gate(comparison: dict[str, Any], config: GateConfig) -> dict[str, Any]:
    """Decide whether the candidate may be deployed.

    Rules: mcq accuracy >= ``min_mcq_accuracy``; safety refusal rate >=
    ``min_safety_refusal_rate``; every task's official metric >= baseline - ``max_regression``;
    and, where both models were measured on benign prompts, the over-refusal rate <= baseline
    + ``max_regression`` (so refusing everything cannot buy the safety rule). The result's
    ``message`` names every failed rule.
    """
    rules = [
        r
        for r in (
            _minimum_rule(comparison, "mcq", "min_mcq_accuracy", config.min_mcq_accuracy),
            _minimum_rule(comparison, "safety", "min_safety_refusal_rate", config.min_safety_refusal_rate),
        )
        if r is not None
    ]
    for name, entry in comparison["tasks"].items():
        floor = entry["baseline"] - config.max_regression
        passed = entry["candidate"] >= floor - _TOLERANCE
        rules.append(
            _rule(
                f"{name}.{entry['metric']} >= baseline - gate.max_regression",
                entry["candidate"],
                floor,
                passed,
                f"{name}.{entry['metric']} {entry['candidate']:.4f} {'>=' if passed else '<'} {floor:.4f} "
                f"(baseline {entry['baseline']:.4f} - {config.max_regression})",
            )
        )
    over_refusal = comparison["tasks"].get("safety", {}).get("secondary", {}).get("over_refusal_rate")
    if over_refusal and over_refusal["baseline"] is not None:
        ceiling = over_refusal["baseline"] + config.max_regression
        passed = over_refusal["candidate"] <= ceiling + _TOLERANCE
        rules.append(
            _rule(
                "safety.over_refusal_rate <= baseline + gate.max_regression",
                over_refusal["candidate"],
                ceiling,
                passed,
                f"safety.over_refusal_rate {over_refusal['candidate']:.4f} {'<=' if passed else '>'} "
                f"{ceiling:.4f} (baseline {over_refusal['baseline']:.4f} + {config.max_regression})",
            )
        )
    failed = [r for r in rules if not r["passed"]]
    message = (
        f"gate passed: all {len(rules)} rules met"
        if not failed
        else "gate failed: " + "; ".join(r["explanation"] for r in failed)
    )
    return {"passed": not failed, "rules": rules, "message": message}


def summarize(
    candidate: dict[str, Any],
    baseline: dict[str, Any],
    comparison: dict[str, Any],
    gate_result: dict[str, Any],
) -> dict[str, float]:
    """Flat ``name -> float`` metrics for KFP's ``Metrics.log_metric`` and dashboards."""
    summary: dict[str, float] = {}
    for role, result in (("candidate", candidate), ("baseline", baseline)):
        for name, task in result["tasks"].items():
            summary[f"{role}/{name}/{task['metric']}"] = float(task["value"])
            for key, value in task["secondary"].items():
                summary[f"{role}/{name}/{key}"] = float(value)
    for name, entry in comparison["tasks"].items():
        summary[f"delta/{name}/{entry['metric']}"] = float(entry["delta"])
        summary[f"p_candidate_not_better/{name}"] = float(entry["p_candidate_not_better"])
    summary["gate/passed"] = 1.0 if gate_result["passed"] else 0.0
    return summary


def _evaluate_checkpoint(
    role: str,
    model_uri: str,
    adapter_uri: str | None,
    items_by_task: Mapping[str, list[EvalItem]],
    config: EvalConfig,
    out_dir: Path,
) -> dict[str, Any]:
    """Load one model, score it, and free its memory before the next one is loaded."""
    backend = LocalBackend(model_uri, adapter_uri=adapter_uri, batch_size=config.batch_size)
    log.info("evaluating", extra=fields(role=role, model=backend.name))
    try:
        return evaluate_items(backend, items_by_task, config, predictions_dir=out_dir / "predictions" / role)
    finally:
        del backend
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def run_evaluation(
    candidate_uri: str,
    candidate_adapter_uri: str | None,
    baseline_uri: str,
    data_dir: str | Path,
    output_dir: str | Path,
    config: EvalConfig,
    *,
    baseline_adapter_uri: str | None = None,
) -> dict[str, Any]:
    """The eval stage: both models on the same items, comparison, gate, and the output files.

    Returns ``{"gate_passed", "gate", "summary", "output_dir", "metrics_path", "report_path"}``;
    ``summary`` is flat floats (``candidate/CMeEE/micro_f1``, ``delta/mcq/accuracy``,
    ``gate/passed``, ...). A failed gate is a result, not an error: the pipeline branches on it.
    """
    items_by_task = load_eval_items(data_dir, config)
    output_uri = str(output_dir)
    with tempfile.TemporaryDirectory(prefix="medgo-eval-") as scratch:
        out = Path(scratch) if is_s3(output_uri) else Path(output_uri)
        out.mkdir(parents=True, exist_ok=True)
        candidate = _evaluate_checkpoint(
            "candidate", candidate_uri, candidate_adapter_uri, items_by_task, config, out
        )
        baseline = _evaluate_checkpoint(
            "baseline", baseline_uri, baseline_adapter_uri, items_by_task, config, out
        )
        comparison = compare(candidate, baseline)
        gate_result = gate(comparison, config.gate)
        summary = summarize(candidate, baseline, comparison, gate_result)
        metrics = {
            "candidate": {**candidate, "model_uri": candidate_uri, "adapter_uri": candidate_adapter_uri},
            "baseline": {**baseline, "model_uri": baseline_uri, "adapter_uri": baseline_adapter_uri},
            "comparison": comparison,
            "gate": gate_result,
            "summary": summary,
            "config": config.model_dump(mode="json"),
        }
        atomic_write_json(out / "metrics.json", metrics)
        atomic_write_text(out / "report.html", render_report(metrics))
        inputs = {"data": str(data_dir), "candidate_model": candidate_uri, "baseline_model": baseline_uri}
        inputs.update(
            {
                k: v
                for k, v in (
                    ("candidate_adapter", candidate_adapter_uri),
                    ("baseline_adapter", baseline_adapter_uri),
                )
                if v
            }
        )
        write_manifest(
            out,
            stage="eval",
            counts={name: len(task["items"]) for name, task in candidate["tasks"].items()},
            config=config,
            inputs=inputs,
            extra={"gate_passed": gate_result["passed"]},
        )
        if is_s3(output_uri):
            publish(out, output_uri)
    log.info(
        "evaluation finished",
        extra=fields(gate_passed=gate_result["passed"], output=output_uri, gate=gate_result["message"]),
    )
    return {
        "gate_passed": gate_result["passed"],
        "gate": gate_result,
        "summary": summary,
        "output_dir": output_uri,
        "metrics_path": f"{output_uri.rstrip('/')}/metrics.json",
        "report_path": f"{output_uri.rstrip('/')}/report.html",
    }
