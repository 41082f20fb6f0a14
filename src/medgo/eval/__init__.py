"""Evaluation: CBLUE-style tasks, clinical MCQ, safety, bias; official metrics; statistical gate; report.

Typical use (what the ``eval`` pipeline component does)::

    from medgo.eval import run_evaluation
    result = run_evaluation(candidate_uri, adapter_uri, baseline_uri, data_dir, output_dir, config)
    result["gate_passed"], result["gate"]["message"], result["summary"]
"""

from medgo.eval.backends import Backend, EndpointBackend, LocalBackend, RequestsFailed
from medgo.eval.gate import compare, gate
from medgo.eval.runner import evaluate_model, load_eval_items, run_evaluation, summarize
from medgo.eval.tasks import TASKS, get_task

__all__ = [
    "TASKS",
    "Backend",
    "EndpointBackend",
    "LocalBackend",
    "RequestsFailed",
    "compare",
    "evaluate_model",
    "gate",
    "get_task",
    "load_eval_items",
    "run_evaluation",
    "summarize",
]
