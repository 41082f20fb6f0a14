"""Evaluate the candidate against the baseline on the same items and decide the deployment gate."""

from kfp.dsl import HTML, Artifact, Input, Metrics, Model, Output

from components._image import medgo_gpu_component


@medgo_gpu_component
def evaluate(
    candidate: Input[Model],
    baseline_model_uri: str,
    eval_data_uri: str,
    metrics: Output[Metrics],
    report: Output[HTML],
    results: Output[Artifact],
    fallback_baseline_uri: str = "",
    tasks: str = "",
    max_items_per_task: int = 0,
    max_new_tokens: int = 48,
    few_shot: int = 0,
    mcq_mode: str = "loglik",
    judge_base_url: str = "",
    judge_model: str = "medgo-judge",
    gate_min_mcq_accuracy: float = 0.0,
    gate_min_safety_rate: float = 0.0,
    gate_margin: float = 0.03,
    gate_confidence: float = 0.95,
    gate_min_items: int = 100,
    gate_n_bootstrap: int = 2000,
    gate_seed: int = 0,
) -> bool:
    """Writes metrics.json (+ report.html) to ``results`` and KFP Metrics; returns whether the gate passed.

    A single ``bool`` output (not a NamedTuple) so ``dsl.If`` on it also resolves under kfp.local;
    an inconclusive gate is False, like a failed one.
    """
    import logging
    import shutil
    from pathlib import Path

    from medgo.components_io import log_metrics
    from medgo.config import EvalConfig, load_config
    from medgo.eval.runner import run_evaluation
    from medgo.storage import localize

    task_list = [name.strip() for name in tasks.split(",") if name.strip()]
    config = load_config(
        EvalConfig,
        **({"tasks": task_list} if task_list else {}),
        max_items_per_task=max_items_per_task,
        max_new_tokens=max_new_tokens,
        few_shot=few_shot,
        mcq_mode=mcq_mode,
        judge={"base_url": judge_base_url, "model": judge_model},
        gate={
            "min_mcq_accuracy": gate_min_mcq_accuracy,
            "min_safety_rate": gate_min_safety_rate,
            "margin": gate_margin,
            "confidence": gate_confidence,
            "min_items": gate_min_items,
            "n_bootstrap": gate_n_bootstrap,
            "seed": gate_seed,
        },
    )
    # The production model, else the base model (first round).
    baseline = baseline_model_uri or fallback_baseline_uri
    outcome = run_evaluation(
        candidate.path, None, baseline, localize(eval_data_uri, what="eval data"), results.path, config
    )
    log_metrics(metrics, outcome["summary"])
    Path(report.path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(Path(results.path) / "report.html", report.path)
    logging.getLogger("medgo.eval").log(
        logging.INFO if outcome["gate_passed"] else logging.WARNING,
        "deployment gate: %s",
        outcome["gate"]["message"],
    )
    return bool(outcome["gate_passed"])
