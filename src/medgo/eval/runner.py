"""Evaluate a candidate and a baseline on the same items, compare them, and decide the gate.

Either model may be a local checkpoint (path, PVC or ``s3://``, run by
:class:`~medgo.eval.backends.LocalBackend`) or an OpenAI-compatible endpoint given as an
``http(s)://…/v1`` URL (optionally ``?model=NAME``; run by
:class:`~medgo.eval.backends.EndpointBackend` with ``config.endpoint``'s settings). The same
task code scores both.

The eval stage's outputs (one directory, local or ``s3://``):

- ``metrics.json``: both models' per-task results (per-item records, breakdowns, notes), the
  comparison (differences with intervals) and the gate decision with every rule;
- ``report.html``: the same for people, self-contained, with charts;
- ``predictions/{candidate,baseline}/<task>.json``: answers in each task's official layout;
- ``manifest.json``: file hashes, config and input lineage.

A task whose requests failed after retries (an endpoint outage) is recorded as not evaluated,
with the failed items, and fails the gate; it is never scored as zero.
"""

from __future__ import annotations

import gc
import logging
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from medgo.config import EvalConfig
from medgo.errors import ConfigError
from medgo.eval.backends import (
    Backend,
    EndpointBackend,
    EndpointSettings,
    LocalBackend,
    RequestsFailed,
    api_key_from_env,
    is_endpoint_ref,
    split_endpoint_ref,
)
from medgo.eval.gate import compare, gate
from medgo.eval.report import render_report
from medgo.eval.tasks import EvalItem, Task, TaskContext, get_task, resolve_task_names
from medgo.logs import fields
from medgo.storage import atomic_write_json, atomic_write_text, is_s3, localize, publish, write_manifest

log = logging.getLogger(__name__)

__all__ = [
    "compare",
    "configure_tasks",
    "evaluate_items",
    "evaluate_model",
    "gate",
    "load_eval_items",
    "open_backend",
    "open_judge",
    "run_evaluation",
    "summarize",
    "task_names",
]


def task_names(config: EvalConfig) -> list[str]:
    """The configured tasks, groups ("cblue", "cblue-core") expanded, each once; unknown names are errors."""
    if not config.tasks:
        raise ConfigError("eval: no tasks configured")
    if len(set(config.tasks)) != len(config.tasks):
        raise ConfigError(f"eval: tasks listed twice: {config.tasks}")
    names = resolve_task_names(config.tasks)
    for name in names:
        get_task(name)
    return names


def load_eval_items(data_dir: str | Path, config: EvalConfig) -> dict[str, list[EvalItem]]:
    """Every configured task's items, validated before any model is loaded (fail fast)."""
    names = task_names(config)
    root = localize(data_dir, what="evaluation data")
    tasks = [get_task(name) for name in names]
    return {task.name: task.load(root, config.max_items_per_task) for task in tasks}


def configure_tasks(
    data_dir: str | Path, config: EvalConfig, judge: Backend | None = None
) -> dict[str, Task]:
    """The configured tasks set up for this run (few-shot examples, MCQ mode, judge)."""
    context = TaskContext(
        data_dir=localize(data_dir, what="evaluation data"),
        few_shot=config.few_shot,
        mcq_mode=config.mcq_mode,
        judge=judge,
        judge_max_tokens=config.judge_max_tokens,
    )
    return {name: get_task(name).configure(context) for name in task_names(config)}


def _failed_task(task: Task, items: list[EvalItem], exc: RequestsFailed) -> dict[str, Any]:
    return {
        "task": task.name,
        "metric": task.metric,
        "n": len(items),
        "error": {"message": str(exc), "failures": [f.to_dict() for f in exc.failures]},
    }


def evaluate_items(
    backend: Backend,
    items_by_task: Mapping[str, list[EvalItem]],
    config: EvalConfig,
    *,
    tasks: Mapping[str, Task] | None = None,
    predictions_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Score ``backend`` on already loaded items; see :func:`evaluate_model` for the result."""
    results = {}
    for name, items in items_by_task.items():
        task = tasks[name] if tasks is not None else get_task(name)
        started = time.perf_counter()
        try:
            result = task.evaluate(backend, items, max_new_tokens=config.max_new_tokens)
        except RequestsFailed as exc:
            log.error(
                "task not evaluated: requests failed after retries",
                extra=fields(task=name, model=backend.name, failed=len(exc.failures), of=exc.total),
            )
            results[name] = _failed_task(task, items, exc)
            continue
        if config.few_shot and not task.shot_count:
            result.notes.append("zero-shot: this task has no few-shot examples")
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
    backend: Backend,
    data_dir: str | Path,
    config: EvalConfig,
    *,
    predictions_dir: str | Path | None = None,
    judge: Backend | None = None,
) -> dict[str, Any]:
    """Score one model on every configured task.

    Returns ``{"model", "tasks": {task: {"metric", "value", "n", "parse_failures", "secondary",
    "breakdown", "details", "notes", "worst", "items"}}}``; ``items`` holds each item's id,
    score and the stats the paired comparison needs. A task whose requests failed holds
    ``{"task", "metric", "n", "error": {"message", "failures"}}`` instead.
    """
    items = load_eval_items(data_dir, config)
    tasks = configure_tasks(data_dir, config, judge)
    return evaluate_items(backend, items, config, tasks=tasks, predictions_dir=predictions_dir)


def _endpoint(ref: str, endpoint_config) -> EndpointBackend:
    base_url, model = split_endpoint_ref(ref, endpoint_config.model)
    return EndpointBackend(
        EndpointSettings(
            base_url=base_url,
            model=model,
            api_key=api_key_from_env(endpoint_config.api_key_env),
            concurrency=endpoint_config.concurrency,
            max_retries=endpoint_config.max_retries,
            timeout_s=endpoint_config.timeout_s,
            backoff_s=endpoint_config.backoff_s,
            max_backoff_s=endpoint_config.max_backoff_s,
        )
    )


def open_backend(model_ref: str, adapter_uri: str | None, config: EvalConfig) -> Backend:
    """A local checkpoint, or an endpoint when ``model_ref`` is an ``http(s)://`` URL."""
    if is_endpoint_ref(model_ref):
        if adapter_uri:
            raise ConfigError("an adapter cannot be applied to an endpoint; deploy it and name its model")
        return _endpoint(model_ref, config.endpoint)
    return LocalBackend(model_ref, adapter_uri=adapter_uri, batch_size=config.batch_size)


def open_judge(config: EvalConfig) -> EndpointBackend | None:
    """The configured judge endpoint, or None (rule-based fallbacks are reported as such)."""
    if not config.judge.base_url:
        return None
    return _endpoint(config.judge.base_url, config.judge)


@contextmanager
def _opened(model_ref: str, adapter_uri: str | None, config: EvalConfig, role: str) -> Iterator[Backend]:
    """A backend for one role, freed (model memory, HTTP connections) before the next is opened."""
    backend = open_backend(model_ref, adapter_uri, config)
    log.info("evaluating", extra=fields(role=role, model=backend.name))
    try:
        yield backend
    finally:
        if isinstance(backend, EndpointBackend):
            backend.close()
        del backend
        gc.collect()
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


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
            if "error" in task:
                summary[f"{role}/{name}/failed_requests"] = float(len(task["error"]["failures"]))
                continue
            summary[f"{role}/{name}/{task['metric']}"] = float(task["value"])
            for key, value in task["secondary"].items():
                summary[f"{role}/{name}/{key}"] = float(value)
    for name, entry in comparison["tasks"].items():
        if entry.get("status") != "ok":
            continue
        summary[f"delta/{name}/{entry['metric']}"] = float(entry["delta"])
        summary[f"delta_ci_low/{name}"] = float(entry["interval"][0])
        summary[f"delta_ci_high/{name}"] = float(entry["interval"][1])
    summary["gate/passed"] = 1.0 if gate_result["passed"] else 0.0
    summary["gate/rules_failed"] = float(sum(r["status"] == "fail" for r in gate_result["rules"]))
    summary["gate/rules_inconclusive"] = float(
        sum(r["status"] == "inconclusive" for r in gate_result["rules"])
    )
    return summary


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

    ``candidate_uri``/``baseline_uri`` are checkpoints or endpoint URLs (see the module
    docstring). Returns ``{"gate_passed", "gate", "summary", "output_dir", "metrics_path",
    "report_path"}``; ``summary`` is flat floats (``candidate/mcq/accuracy``,
    ``delta_ci_low/mcq``, ``gate/passed``, ...). A failed gate is a result, not an error: the
    pipeline branches on it.
    """
    items_by_task = load_eval_items(data_dir, config)
    judge = open_judge(config)
    try:
        tasks = configure_tasks(data_dir, config, judge)
        output_uri = str(output_dir)
        with tempfile.TemporaryDirectory(prefix="medgo-eval-") as scratch:
            out = Path(scratch) if is_s3(output_uri) else Path(output_uri)
            out.mkdir(parents=True, exist_ok=True)
            results = {}
            for role, ref, adapter in (
                ("candidate", candidate_uri, candidate_adapter_uri),
                ("baseline", baseline_uri, baseline_adapter_uri),
            ):
                with _opened(ref, adapter, config, role) as backend:
                    results[role] = evaluate_items(
                        backend,
                        items_by_task,
                        config,
                        tasks=tasks,
                        predictions_dir=out / "predictions" / role,
                    )
            candidate, baseline = results["candidate"], results["baseline"]
            comparison = compare(candidate, baseline, config.gate)
            gate_result = gate(comparison, config.gate)
            summary = summarize(candidate, baseline, comparison, gate_result)
            metrics = {
                "candidate": {**candidate, "model_uri": candidate_uri, "adapter_uri": candidate_adapter_uri},
                "baseline": {**baseline, "model_uri": baseline_uri, "adapter_uri": baseline_adapter_uri},
                "comparison": comparison,
                "gate": gate_result,
                "summary": summary,
                "judge": judge.name if judge is not None else None,
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
                counts={name: len(items) for name, items in items_by_task.items()},
                config=config,
                inputs=inputs,
                extra={"gate_passed": gate_result["passed"], "gate_decision": gate_result["decision"]},
            )
            if is_s3(output_uri):
                publish(out, output_uri)
    finally:
        if judge is not None:
            judge.close()
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
