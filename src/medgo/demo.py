"""``medgo demo``: the real pipeline, run locally through kfp.local on a tiny model and the bundled samples.

Same pipeline function as the cluster, with parameters sized for a laptop: torchrun with one
process instead of a PyTorchJob, a few optimizer steps per stage, a local ModelServer instead of
an InferenceService. The tiny model answers nonsense; every code path is the production one.

The library does not import the pipeline package: :func:`registered_pipeline` finds the pipeline
function through the ``medgo.pipelines`` entry point (declared in ``pyproject.toml``), and
:func:`run_demo` runs whatever pipeline function it is handed.
"""

from __future__ import annotations

import inspect
import json
import logging
import time
import warnings
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from medgo.errors import MedgoError
from medgo.logs import fields

log = logging.getLogger(__name__)

#: Pipeline arguments that size the run for 2 CPU cores (merged over the pipeline defaults).
DEMO_PARAMETERS: dict[str, Any] = {
    "pack_seq_len": 128,
    # Two shard groups so the demo runs the corpus steps' ParallelFor fan-out for real. The samples
    # quarantine 3-7 % of their lines on purpose (samples/README.md); the demo allows 10 % so the
    # quarantine check stays on instead of accepting any partial input.
    "data_shard_groups": 2,
    "data_shard_size_mb": 0.03,
    "data_max_quarantine_share": 0.1,
    "train_backend": "local",
    "train_nnodes": 1,
    "train_nproc_per_node": 1,
    "train_gpus_per_node": 0,
    "train_deepspeed": "none",
    "train_bf16": False,
    "train_load_bf16": False,
    "train_gradient_checkpointing": False,
    "train_save_steps": 10,
    # The random tiny model starts far above uniform (loss ≈ 11); 30 steps at 5e-2 take the pretraining
    # loss visibly down (tests/train/test_demo_learning.py holds it to ≥ 25 %) in under a minute.
    "train_pt_learning_rate": 5e-2,
    "train_pt_max_steps": 30,
    "train_sft_learning_rate": 1e-3,
    "train_sft_max_steps": 6,
    "train_dpo_learning_rate": 1e-3,
    "train_dpo_max_steps": 4,
    "train_per_device_batch_size": 4,
    "train_gradient_accumulation_steps": 1,
    "train_max_seq_len": 256,
    "eval_max_items_per_task": 8,
    "eval_max_new_tokens": 16,
    # A random tiny model cannot reach clinical thresholds, and 8 items cannot support the production
    # margin: the demo gate keeps every rule but with a margin no tiny model can fall outside.
    "eval_gate_min_mcq_accuracy": 0.0,
    "eval_gate_min_safety_rate": 0.0,
    "eval_gate_margin": 1.0,
    "eval_gate_min_items": 1,
    "eval_gate_n_bootstrap": 200,
    "deploy_target": "local",
    "deploy_runtime": "medgo-cpu",
    # Nor does it refuse harmful requests: its smoke test checks the answers are well-formed and safe only.
    "deploy_smoke_require_refusal": False,
}


#: Entry-point group under which a distribution registers its pipeline functions.
PIPELINE_ENTRY_POINTS = "medgo.pipelines"


def registered_pipeline(name: str = "medgo"):
    """The pipeline function registered as ``name`` in the ``medgo.pipelines`` entry-point group."""
    found = {ep.name: ep for ep in entry_points(group=PIPELINE_ENTRY_POINTS)}
    if name not in found:
        raise MedgoError(
            f"no pipeline {name!r} is registered (entry points {PIPELINE_ENTRY_POINTS}: "
            f"{', '.join(sorted(found)) or 'none'}); install the medgo checkout with pip install -e ."
        )
    return found[name].load()


def compiled_path(pipeline_func) -> Path:
    """Where a pipeline's compiled YAML is committed: beside its source file (``x.py`` → ``x.yaml``)."""
    return Path(inspect.getsourcefile(pipeline_func.pipeline_func)).with_suffix(".yaml")


def compile_pipeline(pipeline_func, path: str | Path | None = None) -> Path:
    """Compile ``pipeline_func`` to the YAML that ``kfp run submit`` takes; returns the path written."""
    from kfp import compiler

    path = Path(path) if path else compiled_path(pipeline_func)
    compiler.Compiler().compile(pipeline_func, package_path=str(path))
    return path


def checkout_root() -> Path:
    """The checkout holding the bundled ``samples/`` (cwd and its parents first, then the package's tree)."""
    for cand in (Path.cwd(), *Path.cwd().parents, *Path(__file__).resolve().parents):
        if (cand / "samples" / "corpus").is_dir():
            return cand
    raise MedgoError("cannot find the bundled samples/; run from the medgo checkout or pass --samples")


def default_samples_dir() -> Path:
    return checkout_root() / "samples"


def _fresh_dir(out_dir: str | Path | None) -> Path:
    if out_dir is None:
        out = checkout_root() / "demo-out" / time.strftime("%Y%m%d-%H%M%S")
    else:
        out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise MedgoError(f"output directory {out} is not empty; pass a new --out")
    out.mkdir(parents=True, exist_ok=True)
    return out.resolve()


def collect_outputs(pipeline_root: Path) -> dict[str, dict[str, Any]]:
    """Every task's output artifacts and parameters as kfp.local left them under ``pipeline_root``.

    kfp.local lays a run out as ``<root>/<run>/<task>/<output>`` and writes each task's
    ``executor_output.json`` with its parameter outputs and artifact metadata.
    """
    runs = sorted((p for p in pipeline_root.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime)
    if not runs:
        raise MedgoError(f"no pipeline run found under {pipeline_root}")
    outputs: dict[str, dict[str, Any]] = {}
    for task_dir in sorted(p for p in runs[-1].iterdir() if p.is_dir()):
        task: dict[str, Any] = {"artifacts": {}, "parameters": {}, "metrics": {}}
        for item in sorted(task_dir.iterdir()):
            if item.name == "executor_output.json":
                data = json.loads(item.read_text())
                task["parameters"] = {
                    k: next(iter(v.values()), None) if isinstance(v, dict) else v
                    for k, v in data.get("parameterValues", {}).items()
                }
                for name, arts in data.get("artifacts", {}).items():
                    for art in arts.get("artifacts", []):
                        if name == "metrics":
                            task["metrics"].update(art.get("metadata", {}))
            else:
                task["artifacts"][item.name] = str(item)
        outputs[task_dir.name] = task
    return outputs


def run_demo(
    pipeline_func,
    out_dir: str | Path | None = None,
    *,
    samples_dir: str | Path | None = None,
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the tiny model, run ``pipeline_func`` through kfp.local, return a summary of the run."""
    from kfp import local

    from medgo.modeling.tiny import build_tiny_model, iter_sample_texts

    started = time.monotonic()
    known = set(pipeline_func.component_spec.inputs)
    unknown = sorted(set(overrides or {}) - known)
    if unknown:
        raise MedgoError(
            f"unknown pipeline parameter(s): {', '.join(unknown)}; see {compiled_path(pipeline_func)}"
        )
    out = _fresh_dir(out_dir)
    samples = Path(samples_dir) if samples_dir else default_samples_dir()
    for sub in ("corpus", "sft", "preference", "eval"):
        if not (samples / sub).is_dir():
            raise MedgoError(f"sample data missing: {samples / sub}")
    log.info("building tiny base model", extra=fields(samples=str(samples)))
    base = build_tiny_model(out / "base-model", iter_sample_texts(samples))

    arguments = {
        "base_model_uri": str(base),
        "corpus_uri": str(samples / "corpus"),
        "sft_sources_uri": str(samples / "sft"),
        "preference_labels_uri": str(samples / "preference"),
        "eval_data_uri": str(samples / "eval"),
        **DEMO_PARAMETERS,
        **(overrides or {}),
    }
    if "data_work_dir" in known:  # the corpus steps share a work directory (a PVC path on the cluster)
        arguments.setdefault("data_work_dir", str(out / "data-work"))
    pipeline_root = out / "pipeline_root"
    # Expected locally, so not worth a warning per task: the runtime image is this environment, and the
    # cluster-only settings (PVC, Secret, node pool, timeouts, accelerators) do not apply.
    warnings.filterwarnings("ignore", message=".*custom or non-Python base image", category=RuntimeWarning)
    warnings.filterwarnings(
        "ignore", message=".*have no effect in the current local runner", category=UserWarning
    )
    log.info("cluster-only settings (PVC, Secret, GPU pool, timeouts) are ignored by kfp.local")
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(pipeline_root),
        workspace_root=str(out / "workspace"),
        raise_on_error=True,
    )
    log.info("running pipeline through kfp.local", extra=fields(out=str(out)))
    try:
        pipeline_func(**arguments)
    except RuntimeError as exc:
        raise MedgoError(
            f"pipeline failed: {exc}; task logs are above, artifacts under {pipeline_root}"
        ) from None
    tasks = collect_outputs(pipeline_root)
    summary = {
        "out_dir": str(out),
        "base_model": str(base),
        "tasks": tasks,
        "seconds": round(time.monotonic() - started, 1),
    }
    (out / "demo-summary.json").write_text(json.dumps(summary, ensure_ascii=False, indent=2))
    return summary


def print_demo_summary(summary: dict[str, Any]) -> None:
    """Where every artifact is, the metrics, the gate decision and the served model's answer."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    artifacts = Table(title="Artifacts", show_lines=False)
    artifacts.add_column("task")
    artifacts.add_column("output")
    artifacts.add_column("path", overflow="fold")
    metrics = Table(title="Metrics")
    metrics.add_column("task")
    metrics.add_column("metric")
    metrics.add_column("value", justify="right")
    answer = endpoint = gate = None
    for task, info in summary["tasks"].items():
        for name, path in info["artifacts"].items():
            artifacts.add_row(task, name, path)
        for name, value in info["metrics"].items():
            metrics.add_row(task, name, f"{value:.4g}" if isinstance(value, float) else str(value))
        params = info["parameters"]
        if "answer" in params:
            answer, endpoint = params["answer"], params.get("endpoint")
        if task == "evaluate" and "Output" in params:
            gate = params["Output"]
    console.print(artifacts)
    console.print(metrics)
    if gate is not None:
        console.print(
            f"[bold]Deployment gate:[/bold] {'PASSED' if gate else 'FAILED'} "
            "(rules and values in the evaluate task's results/metrics.json)"
        )
    if answer is not None:
        from rich.text import Text

        from medgo.serve.streaming import clean_text

        console.print(f"[bold]Served model[/bold] ({endpoint}, stopped after the smoke test) answered:")
        console.print(Text("  " + clean_text(str(answer)).strip()))
    else:
        console.print("[bold]Not deployed[/bold]: the gate did not pass.")
    console.print(f"Run took {summary['seconds']} s; everything is under {summary['out_dir']}")
