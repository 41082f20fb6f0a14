"""``medgo``: the command line over the library (data, model, train, eval, serve, deploy, pipeline, demo).

Every command is a thin shell: parse options, build the stage's typed config, call ``medgo.<stage>``.
User mistakes (missing file, malformed config, unknown key, bad option) print one line
``error: …`` and exit 2; there is no traceback unless ``MEDGO_DEBUG=1``.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from medgo import __version__
from medgo.logs import setup_logging

app = typer.Typer(
    name="medgo",
    help="medgo: Kubernetes-native MLOps for the MedGo Chinese medical LLM.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)
data_app = typer.Typer(help="Data preparation: prepare, pack, sft, prefs.", no_args_is_help=True)
model_app = typer.Typer(help="Model utilities.", no_args_is_help=True)
pipeline_app = typer.Typer(
    help="Compile the KFP pipelines; schedule one as a recurring run.", no_args_is_help=True
)
feedback_app = typer.Typer(help="Doctor feedback: the store's service, exports.", no_args_is_help=True)
app.add_typer(data_app, name="data")
app.add_typer(model_app, name="model")
app.add_typer(pipeline_app, name="pipeline")
app.add_typer(feedback_app, name="feedback")

ConfigOpt = Annotated[
    Path | None, typer.Option("--config", "-c", help="YAML file with the stage's settings.")
]
SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set",
        help="Override one setting, KEY=VALUE (dotted keys reach nested settings, e.g. lora.r=8). Repeatable.",
    ),
]


def _print_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, ensure_ascii=False, indent=2, default=str))


@app.callback()
def _root(
    log_level: Annotated[str, typer.Option(help="Log level: DEBUG, INFO, WARNING, ERROR.")] = "INFO",
    json_logs: Annotated[bool, typer.Option("--json-logs", help="Emit logs as JSON lines.")] = False,
) -> None:
    """medgo: Kubernetes-native MLOps for the MedGo Chinese medical LLM."""
    if log_level.upper() not in {"DEBUG", "INFO", "WARNING", "ERROR"}:
        raise typer.BadParameter(
            f"{log_level!r} is not one of DEBUG, INFO, WARNING, ERROR", param_hint="--log-level"
        )
    setup_logging(log_level, json_logs=json_logs or None)


@app.command()
def version() -> None:
    """Print the medgo version."""
    typer.echo(__version__)


# --------------------------------------------------------------------------------------------- data
AllowPartialOpt = Annotated[
    bool,
    typer.Option(
        "--allow-partial",
        help="Accept truncated or undecodable input files and a quarantined share over "
        "max_quarantine_share (exit 0; the manifest says accepted_partial). Without it such a run "
        "writes everything it could, then exits 2 with the reason.",
    ),
]
EvalDataOpt = Annotated[
    str | None,
    typer.Option(
        "--eval-data",
        help="Evaluation data directory (local or s3://): drop training text sharing a character "
        "n-gram (decontamination.ngram_chars) with any of its items, counted per task.",
    ),
]


def _data_config(
    cls, config: Path | None, set_: list[str] | None, allow_partial: bool, eval_data: str | None, **values
):
    from medgo.config import load_config

    if allow_partial:
        values["allow_partial"] = True
    if eval_data:
        values["decontamination"] = {"eval_dir": eval_data}
    return load_config(cls, config, set_, **values)


def _run_data_step(step, *args) -> None:
    """Print the step's counts; on a failed step print them too, then exit 2 with the reason."""
    from medgo.data.accounting import StepFailed

    try:
        _print_json(step(*args))
    except StepFailed as failed:
        _print_json(failed.counts)
        raise


@data_app.command("prepare")
def data_prepare(
    corpus: Annotated[
        str,
        typer.Argument(
            help="Raw corpus: a file or directory of .jsonl, .jsonl.gz, .jsonl.zst and .parquet files, "
            "local, on a PVC or s3:// (objects are streamed one by one). Other files are listed as skipped."
        ),
    ],
    out: Annotated[
        str,
        typer.Argument(
            help="Output directory, local or s3:// (clean/, quarantine/, dropped/ shards, data card, "
            "manifest). Must not be inside the corpus."
        ),
    ],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    allow_partial: AllowPartialOpt = False,
    eval_data: EvalDataOpt = None,
    workers: Annotated[
        int | None, typer.Option(help="Worker processes (default: one per available CPU).", min=1)
    ] = None,
    work_dir: Annotated[
        str | None,
        typer.Option(
            help="Where finished shards are kept until the run succeeds (default: <out>.work); "
            "re-running the same command after a crash resumes from it."
        ),
    ] = None,
) -> None:
    """Read, clean, filter, deduplicate (exact and MinHash near-duplicates), decontaminate, privacy-scrub
    and mix a raw corpus; quarantine bad records; write a data card."""
    from functools import partial

    from medgo.config import PrepareConfig
    from medgo.data.prepare import prepare_corpus

    cfg = _data_config(PrepareConfig, config, set_, allow_partial, eval_data, workers=workers)
    _run_data_step(partial(prepare_corpus, work_dir=work_dir), corpus, out, cfg)


@data_app.command("pack")
def data_pack(
    clean: Annotated[str, typer.Argument(help="Directory written by `medgo data prepare`, local or s3://.")],
    out: Annotated[
        str, typer.Argument(help="Output directory for tokens-*.parquet and the manifest, local or s3://.")
    ],
    tokenizer: Annotated[str, typer.Option(help="Tokenizer (model directory, local or s3://).")],
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Tokenise clean documents and pack them into fixed-length sequences."""
    from medgo.config import PackConfig, load_config
    from medgo.data.pack import pack_corpus

    _print_json(pack_corpus(clean, tokenizer, out, load_config(PackConfig, config, set_)))


@data_app.command("sft")
def data_sft(
    sources: Annotated[
        str,
        typer.Argument(
            help="Directory with consultations/drug_labels/guideline_qa/diagnosis/safety files "
            "(.jsonl, .jsonl.gz, .jsonl.zst or .parquet), local or s3://."
        ),
    ],
    out: Annotated[
        str, typer.Argument(help="Output directory for train.jsonl and the manifest, local or s3://.")
    ],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    allow_partial: AllowPartialOpt = False,
    eval_data: EvalDataOpt = None,
) -> None:
    """Build chat-format SFT records from the source types."""
    from medgo.config import SftBuildConfig
    from medgo.data.sft import build_sft
    from medgo.storage import localize

    cfg = _data_config(SftBuildConfig, config, set_, allow_partial, eval_data)
    _run_data_step(build_sft, localize(sources, what="SFT sources"), out, cfg)


@data_app.command("prefs")
def data_prefs(
    labels: Annotated[
        str, typer.Argument(help="Doctor labels: a JSONL/.gz/.zst/Parquet file or directory, local or s3://.")
    ],
    out: Annotated[
        str, typer.Argument(help="Output directory for train.jsonl and the manifest, local or s3://.")
    ],
    config: ConfigOpt = None,
    set_: SetOpt = None,
    allow_partial: AllowPartialOpt = False,
    eval_data: EvalDataOpt = None,
) -> None:
    """Turn doctors' acceptable/unacceptable labels into DPO preference pairs."""
    from medgo.config import PrefsConfig
    from medgo.data.prefs import build_preferences

    _run_data_step(
        build_preferences, labels, out, _data_config(PrefsConfig, config, set_, allow_partial, eval_data)
    )


# -------------------------------------------------------------------------------------------- model
@model_app.command("tiny")
def model_tiny(
    out: Annotated[Path, typer.Argument(help="Directory to save the model and tokenizer in.")],
    samples: Annotated[
        Path | None, typer.Option(help="Text to train the tokenizer on (default: bundled samples/).")
    ] = None,
    vocab_size: Annotated[int, typer.Option(help="BPE vocabulary size.")] = 4000,
) -> None:
    """Build the tiny random Qwen2 model + BPE tokenizer used by tests and the demo (offline)."""
    from medgo.demo import default_samples_dir
    from medgo.errors import InputError
    from medgo.modeling.tiny import build_tiny_model, iter_sample_texts

    samples = samples or default_samples_dir()
    if not samples.is_dir():
        raise InputError(f"samples directory not found: {samples}")
    typer.echo(build_tiny_model(out, iter_sample_texts(samples), vocab_size=vocab_size))


# -------------------------------------------------------------------------------------------- train
def _launch_help(name: str) -> str:
    from medgo.config import LaunchConfig

    return LaunchConfig.model_fields[name].description + "."


@app.command()
def train(
    config: Annotated[
        Path,
        typer.Option("--config", "-c", help="TrainConfig YAML (stage, model_uri, data_uri, output_uri, …)."),
    ],
    set_: SetOpt = None,
    backend: Annotated[str, typer.Option(help=_launch_help("backend"))] = "local",
    trainer_api: Annotated[str, typer.Option(help=_launch_help("trainer_api"))] = "v2.2+",
    nnodes: Annotated[int, typer.Option(help=_launch_help("nnodes"))] = 1,
    nproc_per_node: Annotated[int, typer.Option(help=_launch_help("nproc_per_node"))] = 1,
    gpus_per_node: Annotated[int, typer.Option(help=_launch_help("gpus_per_node"))] = 0,
    gpu_product: Annotated[str, typer.Option(help=_launch_help("gpu_product"))] = "",
    image: Annotated[str, typer.Option(help=_launch_help("image"))] = "",
    namespace: Annotated[str, typer.Option(help=_launch_help("namespace"))] = "medgo",
    job_name: Annotated[str, typer.Option(help=_launch_help("job_name"))] = "",
    timeout: Annotated[float | None, typer.Option(help=_launch_help("timeout_s"))] = None,
    work_dir: Annotated[str | None, typer.Option(help=_launch_help("work_dir"))] = None,
) -> None:
    """Run one training stage (pt | sft | dpo) under torchrun or as a PyTorchJob."""
    from medgo.config import LaunchConfig, TrainConfig, load_config
    from medgo.train.launch import launch

    cfg = load_config(TrainConfig, config, set_)
    where = load_config(
        LaunchConfig,
        backend=backend,
        trainer_api=trainer_api,
        nnodes=nnodes,
        nproc_per_node=nproc_per_node,
        gpus_per_node=gpus_per_node,
        gpu_product=gpu_product,
        image=image,
        namespace=namespace,
        job_name=job_name,
        timeout_s=timeout,
        work_dir=work_dir,
    )
    launch(cfg, where)
    typer.echo(cfg.output_uri)


@app.command()
def plan(
    model: Annotated[
        str,
        typer.Option(
            help="Built-in shape (qwen2-0.5b, qwen2-1.5b, qwen2-7b, qwen2-72b), an HF config.json, or a model "
            "directory holding one."
        ),
    ],
    nodes: Annotated[int, typer.Option(help="Training nodes (pods).", min=1)] = 1,
    gpus_per_node: Annotated[int, typer.Option(help="GPUs (training processes) per node.", min=1)] = 8,
    gpu_mem_gb: Annotated[float, typer.Option(help="Memory of one GPU in GiB (A100-80GB: 80).")] = 80.0,
    stage: Annotated[str, typer.Option(help="pt, sft or dpo (DPO forwards chosen and rejected).")] = "sft",
    lora: Annotated[
        bool, typer.Option("--lora/--full", help="LoRA (frozen base) or full fine-tuning.")
    ] = True,
    seq_len: Annotated[int, typer.Option(help="Tokens per sequence.", min=1)] = 4096,
    micro_batch: Annotated[int, typer.Option(help="Sequences per GPU per forward pass.", min=1)] = 1,
    lora_r: Annotated[int, typer.Option(help="LoRA rank (all linear projections).", min=1)] = 16,
    export_merged: Annotated[
        bool, typer.Option(help="Count the host memory of exporting the merged model on the master pod.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the plan as JSON.")] = False,
) -> None:
    """Per-GPU memory under ZeRO-2/3/3-offload (with and without gradient checkpointing), the config that
    fits with its reason, and the pod's CPU, memory and /dev/shm."""
    from medgo.errors import InputError
    from medgo.train.plan import format_plan
    from medgo.train.plan import plan as make_plan

    if stage not in ("pt", "sft", "dpo"):
        raise InputError(f"--stage {stage!r}: expected pt, sft or dpo")
    result = make_plan(
        model,
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        gpu_mem_gb=gpu_mem_gb,
        stage=stage,
        lora=lora,
        seq_len=seq_len,
        micro_batch=micro_batch,
        lora_r=lora_r,
        export_merged=export_merged,
    )
    if as_json:
        _print_json(result.to_dict())
    else:
        typer.echo(format_plan(result))


# --------------------------------------------------------------------------------------------- eval
@app.command("eval")
def evaluate(
    candidate: Annotated[
        str,
        typer.Option(
            help="Candidate: model or adapter directory (local, PVC or s3://), or an OpenAI-compatible "
            "endpoint URL ending in /v1 (add ?model=NAME to pick the served model)."
        ),
    ],
    baseline: Annotated[
        str,
        typer.Option(help="Baseline: model directory (local, PVC or s3://) or endpoint URL, as --candidate."),
    ],
    data: Annotated[str, typer.Option(help="Evaluation data directory (official layouts), local or s3://.")],
    out: Annotated[
        str,
        typer.Option(help="Output directory for metrics.json, report.html, manifest.json; local or s3://."),
    ],
    candidate_adapter: Annotated[
        str | None, typer.Option(help="LoRA adapter applied to a local candidate model.")
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Evaluate candidate vs baseline on the same items and apply the statistical gate.

    Exit 0 when the gate passes, 1 when it fails or is inconclusive (the reasons are printed).
    Tasks, judge, endpoint, MCQ mode, few-shot and gate settings come from --config / --set, e.g.
    --set 'tasks=[cblue-core,mcq]' (groups: cblue = all 17 CBLUE tasks, cblue-core = CMeEE,
    KUAKE-QIC, CHIP-STS) --set few_shot=2 --set judge.base_url=http://judge/v1
    --set gate.margin=0.03 --set mcq_mode=generate.
    """
    from medgo.config import EvalConfig, load_config
    from medgo.eval.runner import run_evaluation
    from medgo.storage import localize

    result = run_evaluation(
        candidate,
        candidate_adapter,
        baseline,
        localize(data, what="evaluation data"),
        out,
        load_config(EvalConfig, config, set_),
    )
    _print_json({"gate": result["gate"], "summary": result["summary"]})
    if not result["gate_passed"]:
        raise typer.Exit(1)


# -------------------------------------------------------------------------------------- serve/deploy
@app.command(context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def serve(
    ctx: typer.Context,
    model: Annotated[str, typer.Option(help="Model or adapter directory (local, PVC or s3://).")],
    host: Annotated[
        str, typer.Option(help="Address to bind; 0.0.0.0 exposes the server beyond this machine.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="HTTP port.", min=1, max=65535)] = 8080,
    grpc: Annotated[
        bool, typer.Option(help="Also serve KServe's v2 gRPC protocol (all interfaces).")
    ] = False,
) -> None:
    """Run the KServe ModelServer (v1/v2 and OpenAI-compatible chat) in the foreground.

    Extra options pass through to ``python -m medgo.serve`` (see its --help).
    """
    os.execv(
        sys.executable,
        [
            sys.executable,
            "-m",
            "medgo.serve",
            "--model_uri",
            model,
            "--http_host",
            host,
            "--http_port",
            str(port),
            "--enable_grpc",
            str(grpc).lower(),
            *ctx.args,
        ],
    )


@app.command()
def deploy(
    model: Annotated[
        Path, typer.Option(help="Model directory to deploy (local) or whose URI to deploy (kserve).")
    ],
    out: Annotated[Path, typer.Option(help="Directory for the deployment record.")],
    model_uri: Annotated[
        str | None, typer.Option(help="Storage URI for KServe (default: the model path).")
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Deploy a model (local ModelServer or KServe InferenceService with canary) and smoke-test it.

    Exits 1 when the canary failed and was rolled back (the record in --out says why).
    """
    from medgo.config import DeployConfig, load_config
    from medgo.deploy import ROLLED_BACK, deploy_model
    from medgo.errors import InputError

    if not model.exists():
        raise InputError(f"model not found: {model}")
    record = deploy_model(
        model_path=str(model),
        model_uri=model_uri or str(model),
        config=load_config(DeployConfig, config, set_),
        record_dir=out,
    )
    _print_json(record)
    if record["decision"] == ROLLED_BACK:
        raise typer.Exit(1)


# ----------------------------------------------------------------------------------- pipeline/demo
@pipeline_app.command("compile")
def pipeline_compile(
    out: Annotated[
        Path | None,
        typer.Option(
            help="Where to write the YAML (default: beside the pipeline's source, "
            "pipelines/medgo_pipeline.yaml)."
        ),
    ] = None,
    name: Annotated[
        str, typer.Option(help="Registered pipeline (entry-point group medgo.pipelines).")
    ] = "medgo",
) -> None:
    """Compile a pipeline to the YAML that `kfp run submit` takes (--name feedback-round for the feedback loop)."""
    from medgo.demo import compile_pipeline, registered_pipeline

    typer.echo(compile_pipeline(registered_pipeline(name), out))


@pipeline_app.command("schedule")
def pipeline_schedule(
    host: Annotated[str, typer.Option(help="KFP API endpoint, e.g. http://ml-pipeline-ui.kubeflow.")],
    package: Annotated[
        Path, typer.Option(help="Compiled pipeline YAML.", exists=True, dir_okay=False)
    ] = Path("pipelines/feedback_round.yaml"),
    experiment: Annotated[str, typer.Option(help="KFP experiment (created if missing).")] = "medgo",
    job_name: Annotated[str, typer.Option(help="Name of the recurring run.")] = "medgo-feedback-nightly",
    cron: Annotated[
        str, typer.Option(help="KFP cron with seconds: second minute hour day-of-month month day-of-week.")
    ] = "0 0 2 * * *",
    namespace: Annotated[str | None, typer.Option(help="KFP namespace (multi-user installs).")] = "medgo",
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", help="Pipeline parameter KEY=VALUE (checked against the YAML). Repeatable."),
    ] = None,
) -> None:
    """Create a KFP recurring run of a compiled pipeline: one round at a time, no catch-up, caching off."""
    from medgo.errors import ConfigError
    from medgo.recurring import schedule

    params = {}
    for item in set_ or []:
        key, sep, value = item.partition("=")
        if not sep:
            raise ConfigError(f"--set {item!r} is not KEY=VALUE")
        params[key.strip()] = value
    run = schedule(
        host, package, experiment=experiment, job_name=job_name, cron=cron, params=params, namespace=namespace
    )
    _print_json({"recurring_run_id": run.recurring_run_id, "display_name": run.display_name})


# -------------------------------------------------------------------------------------------- feedback
@feedback_app.command("serve", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
def feedback_serve(ctx: typer.Context) -> None:
    """Run the medgo-feedback service (the store's single writer); options as ``python -m medgo.serve.feedback_service --help``."""
    os.execv(sys.executable, [sys.executable, "-m", "medgo.serve.feedback_service", *ctx.args])


@feedback_app.command("export")
def feedback_export(
    to: Annotated[str, typer.Option(help="Export target: a directory (PVC path) or s3:// prefix.")],
    db: Annotated[
        Path | None,
        typer.Option(help="Store file this process may own (the service must not be running on it)."),
    ] = None,
    service: Annotated[
        str | None, typer.Option(help="URL of the medgo-feedback service that owns the store.")
    ] = None,
    tokens_dir: Annotated[
        Path | None,
        typer.Option(help="Mounted token Secret; its 'export' token authenticates to the service."),
    ] = None,
    config: ConfigOpt = None,
    set_: SetOpt = None,
) -> None:
    """Export the feedback entries not yet exported, scrubbed, each exactly once."""
    from medgo.config import FeedbackExportConfig, load_config
    from medgo.feedback.round import export_new_feedback
    from medgo.feedback.tokens import TokenSet

    token = TokenSet(tokens_dir).token("export") if tokens_dir else None
    export_config = load_config(FeedbackExportConfig, config, set_, target_uri=to)
    _print_json(
        export_new_feedback(export_config, service_url=service or "", db_path=str(db or ""), token=token)
    )


@app.command()
def demo(
    out: Annotated[
        Path | None, typer.Option(help="Fresh output directory (default demo-out/<timestamp>).")
    ] = None,
    samples: Annotated[
        Path | None, typer.Option(help="Sample data directory (default: bundled samples/).")
    ] = None,
    set_: SetOpt = None,
) -> None:
    """Run the whole pipeline locally through kfp.local on a tiny model and the bundled samples."""
    from medgo.config import parse_overrides
    from medgo.demo import print_demo_summary, registered_pipeline, run_demo

    summary = run_demo(registered_pipeline(), out, samples_dir=samples, overrides=parse_overrides(set_))
    print_demo_summary(summary)


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the app, turning user errors into one line and exit code 2."""
    from medgo.errors import MedgoError

    command = typer.main.get_command(app)
    try:
        result = command.main(args=argv, prog_name="medgo", standalone_mode=False)
    except typer.Exit as exc:
        return exc.exit_code
    except typer.Abort:
        typer.echo("aborted", err=True)
        return 130
    except typer.exceptions.TyperException as exc:  # usage errors: missing argument, bad option value
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        typer.echo(f"error: {message} (see --help)", err=True)
        return 2
    except MedgoError as exc:
        if os.environ.get("MEDGO_DEBUG") == "1":
            raise
        typer.echo(f"error: {exc}", err=True)
        return 2
    return result if isinstance(result, int) else 0


if __name__ == "__main__":
    sys.exit(main())
