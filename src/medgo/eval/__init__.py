"""Evaluation: CBLUE-style tasks, clinical MCQ and safety, official metrics, report and gate.

Typical use (what the ``eval`` pipeline component does)::

    from medgo.eval import run_evaluation
    result = run_evaluation(candidate_uri, adapter_uri, baseline_uri, data_dir, output_dir, config)
    result["gate_passed"], result["summary"]
"""

from medgo.eval.backends import Backend, LocalBackend
from medgo.eval.runner import compare, evaluate_model, gate, load_eval_items, run_evaluation, summarize
from medgo.eval.tasks import TASKS, get_task

__all__ = [
    "TASKS",
    "Backend",
    "LocalBackend",
    "compare",
    "evaluate_model",
    "gate",
    "get_task",
    "load_eval_items",
    "run_evaluation",
    "summarize",
]
