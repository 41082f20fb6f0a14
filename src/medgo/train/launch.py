"""Launch the trainer: ``local`` starts torchrun processes on 127.0.0.1 (one per simulated
node, same env contract as a PyTorchJob); ``pytorchjob`` submits a Kubeflow PyTorchJob through
:mod:`medgo.k8s.pytorchjob`; ``trainjob`` a Kubeflow Trainer v2 TrainJob (:mod:`medgo.k8s.trainjob`).

Both backends run the identical node command, ``python -m medgo.train.node …`` (which execs
``torchrun … -m medgo.train``); how big the run is and where it goes is a :class:`LaunchConfig`.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from medgo.config import LaunchConfig, TrainConfig
from medgo.errors import MedgoError
from medgo.k8s.names import (
    CHECKPOINT_MOUNT,
    CHECKPOINT_PVC,
    DATA_MOUNT,
    DATA_PVC,
    GPU_NODE_LABEL,
    GPU_TOLERATION,
    TRAINING_PRIORITY_CLASS,
)
from medgo.logs import fields
from medgo.processes import LOOPBACK, free_port, log_tail, stop_process_tree
from medgo.storage import MANIFEST_NAME
from medgo.train.checkpoint import CheckpointStore, checkpoint_root_uri
from medgo.train.distributed import NODE_MODULE, STAGING_ENV, NodeEnv
from medgo.train.export import commit_artifact

log = logging.getLogger(__name__)


def node_command(trainer_args: list[str], python: str = "python") -> list[str]:
    """What every node runs (a PyTorchJob pod or a local simulated node): the node entry, which reads the
    distributed env contract and execs torchrun, followed by the trainer's arguments."""
    return [python, "-m", NODE_MODULE, *trainer_args]


def write_train_config(config: TrainConfig, path: str | Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        yaml.safe_dump(config.model_dump(mode="json"), allow_unicode=True, sort_keys=False), encoding="utf-8"
    )
    return path


def _failure_cause(path: Path, n: int = 25) -> str:
    """The trainer's own one-line ``error: …`` if it printed one, else the log's last lines."""
    with open(path, encoding="utf-8", errors="replace") as fh:
        errors = [line.strip() for line in fh if line.startswith("error: ")]
    return errors[-1] if errors else "last lines of the log:\n" + log_tail(path, n)


def launch_local(
    config: TrainConfig,
    *,
    nnodes: int = 1,
    nproc_per_node: int = 1,
    work_dir: str | Path | None = None,
    timeout_s: float | None = None,
    extra_env: dict[str, str] | None = None,
) -> Path:
    """Run one training stage locally under torchrun and return the log directory.

    Each simulated node runs ``python -m medgo.train.node`` with the variables a PyTorchJob pod
    gets (see :class:`NodeEnv`); ``nnodes > 1`` starts that many against one master on 127.0.0.1,
    the multi-node code path without a cluster. Raises
    :class:`MedgoError` with the failing node's log tail when any node exits non-zero, and
    stops all nodes when one fails or the timeout passes.

    The launcher owns the whole process tree: every node and every torchrun worker is stopped when
    the run fails, times out or is interrupted (and each dies with its parent should the launcher
    itself be killed). The trainer writes its result to ``<work_dir>/result``; only when every node
    exited 0 is it committed to ``output_uri`` (and the run's checkpoints removed), so a failed run
    publishes nothing.
    """
    if nnodes < 1 or nproc_per_node < 1:
        raise MedgoError("nnodes and nproc_per_node must be ≥ 1")
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="medgo-train-"))
    work.mkdir(parents=True, exist_ok=True)
    cfg_path = write_train_config(config, work / "train.yaml")
    port = free_port()
    env = dict(os.environ)
    env.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "medgo" / "torch_extensions"))
    env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // (nnodes * nproc_per_node))))
    env["PYTHONUNBUFFERED"] = "1"
    staging = work / "result"
    shutil.rmtree(staging, ignore_errors=True)
    env[STAGING_ENV] = str(staging)
    env.update(extra_env or {})
    procs: list[tuple[int, subprocess.Popen, Path]] = []
    log.info(
        "launching trainer",
        extra=fields(stage=config.stage, nnodes=nnodes, nproc_per_node=nproc_per_node, logs=str(work)),
    )
    try:
        for rank in range(nnodes):
            node = NodeEnv(LOOPBACK, port, nnodes, nproc_per_node, rank)
            log_path = work / f"node-{rank}.log"
            cmd = node_command(["--config", str(cfg_path)], python=sys.executable)
            fh = open(log_path, "w", encoding="utf-8")  # noqa: SIM115 - closed with the process below
            procs.append(
                (
                    rank,
                    subprocess.Popen(cmd, env={**env, **node.as_env()}, stdout=fh, stderr=subprocess.STDOUT),
                    log_path,
                )
            )
            fh.close()
        deadline = time.monotonic() + timeout_s if timeout_s else None
        pending = {rank for rank, _, _ in procs}
        while pending:
            for rank, proc, log_path in procs:
                if rank not in pending:
                    continue
                remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
                try:
                    rc = proc.wait(timeout=min(1.0, remaining) if remaining is not None else 1.0)
                except subprocess.TimeoutExpired:
                    if deadline is not None and time.monotonic() >= deadline:
                        raise MedgoError(
                            f"training timed out after {timeout_s:.0f}s; logs in {work}"
                        ) from None
                    continue
                pending.discard(rank)
                if rc != 0:
                    raise MedgoError(
                        f"trainer node {rank} failed (exit code {rc}, log {log_path}): "
                        f"{_failure_cause(log_path)}"
                    )
    except BaseException:
        _stop_all(procs)
        shutil.rmtree(staging, ignore_errors=True)  # a failed run publishes nothing
        raise
    _stop_all(procs)  # every node exited; reap anything a node left behind
    if not (staging / MANIFEST_NAME).is_file():
        raise MedgoError(f"every trainer node exited 0 but no result was written; logs in {work}")
    commit_artifact(staging, str(config.output_uri))
    CheckpointStore(checkpoint_root_uri(config)).delete_all()
    log.info("trainer finished", extra=fields(stage=config.stage, logs=str(work)))
    return work


def _stop_all(procs) -> None:
    for _, proc, _ in procs:
        stop_process_tree(proc, timeout_s=10)


def config_to_args(config: TrainConfig) -> list[str]:
    """The trainer command line carrying ``config`` entirely as ``--set`` overrides.

    Used where no config file can be shared with the pods (a PyTorchJob); values are JSON,
    which the trainer's YAML override parser reads back losslessly.
    """
    args: list[str] = []
    for key, value in config.model_dump(mode="json", exclude_none=True).items():
        if isinstance(value, dict):
            args += [f"--set={key}.{k}={json.dumps(v, ensure_ascii=False)}" for k, v in value.items()]
        else:
            args.append(f"--set={key}={json.dumps(value, ensure_ascii=False)}")
    return args


def cluster_train_config(config: TrainConfig, where: LaunchConfig) -> TrainConfig:
    """The config the pods run: checkpoints on the checkpoint PVC under the job's name unless configured,
    so a restarted pod, or a retried step's new job of the same name, resumes from them."""
    if config.checkpoint_uri:
        return config
    return config.model_copy(update={"checkpoint_uri": f"{CHECKPOINT_MOUNT}/{where.job_name}"})


def _model_shape(model_uri: str):
    """The base model's shape from its ``config.json`` (following an adapter to its base)."""
    from medgo.modeling.loading import ADAPTER_CONFIG, adapter_base_model, is_adapter_dir
    from medgo.storage import localize
    from medgo.train.plan import resolve_shape

    local = localize(model_uri, what="model config", include=["config.json", ADAPTER_CONFIG])
    if is_adapter_dir(local):
        local = localize(adapter_base_model(local), what="base model config", include=["config.json"])
    return resolve_shape(str(local))


def pod_resources(config: TrainConfig, where: LaunchConfig) -> dict[str, str]:
    """CPU, memory and ``/dev/shm`` of each training pod: what ``where`` says, the rest from the planner."""
    given = {"cpu": where.cpu, "memory": where.memory, "shm_size": where.shm_size}
    if all(given.values()):
        return given
    from medgo.train.plan import pod_size

    try:
        shape = _model_shape(config.model_uri)
    except MedgoError as exc:
        raise MedgoError(
            f"cannot size the training pods from the model ({exc}); set cpu, memory and shm_size "
            "(pipeline: train_cpu, train_memory, train_shm_size)"
        ) from None
    trainable = shape.lora_params(config.lora.r) if config.use_lora else shape.total_params()
    planned = pod_size(
        shape,
        config.deepspeed if config.deepspeed != "none" else "zero2",
        nodes=where.nnodes,
        gpus_per_node=where.nproc_per_node,
        trainable=trainable,
        load_dtype_bytes=2 if config.load_dtype == "bfloat16" else 4,
        export_merged=config.export_merged and config.use_lora,
    )
    sized = {k: v or getattr(planned, k) for k, v in given.items()}
    log.info("training pods sized by the planner", extra=fields(model=shape.name, **sized))
    return sized


def launch(config: TrainConfig, where: LaunchConfig | None = None, *, launcher=None) -> None:
    """Run a training stage where ``where`` says: ``local`` (torchrun here), ``pytorchjob`` (Kubeflow
    training-operator) or ``trainjob`` (Kubeflow Trainer v2).

    The cluster job gets the whole config as ``--set`` arguments, the GPU node pool (``gpu_product`` as
    node selector, the GPU taint's toleration, the training priority class), the data and checkpoint
    PVCs, the S3 Secret, pods sized by :func:`pod_resources`, and ``backoff_limit`` restarts that each
    resume from the newest checkpoint. The step ends with the reason as soon as a pod cannot recover
    (Unschedulable, image pull, OOMKilled, crash loop past the restarts, Pending too long) and deletes
    the job then, on timeout, when cancelled, and when the API stays unreachable; an operator-reported
    failure surfaces with its reason and the master's last log lines. ``launcher`` defaults to a
    launcher for the backend on the reachable cluster.
    """
    where = where or LaunchConfig()
    if where.backend == "local":
        launch_local(
            config,
            nnodes=where.nnodes,
            nproc_per_node=where.nproc_per_node,
            work_dir=where.work_dir,
            timeout_s=where.timeout_s,
        )
        return
    if not where.image or not where.job_name:
        raise MedgoError(f"the {where.backend} backend needs an image and a job name")
    from medgo.k8s.pytorchjob import ApiLost, PyTorchJobLauncher, TrainingJobFailed, build_pytorchjob
    from medgo.k8s.trainjob import TrainJobLauncher, build_trainjob

    config = cluster_train_config(config, where)
    shared = dict(
        name=where.job_name,
        namespace=where.namespace,
        image=where.image,
        command=node_command(config_to_args(config)),
        nnodes=where.nnodes,
        nproc_per_node=where.nproc_per_node,
        gpus_per_node=where.gpus_per_node,
        node_selector={GPU_NODE_LABEL: where.gpu_product} if where.gpu_product else None,
        tolerations=[GPU_TOLERATION] if where.gpus_per_node else None,
        pvc_mounts={DATA_PVC: DATA_MOUNT, CHECKPOINT_PVC: CHECKPOINT_MOUNT},
        labels={"medgo.io/stage": config.stage},
        **pod_resources(config, where),
    )
    if where.backend == "trainjob":
        job = build_trainjob(**shared)
    else:
        job = build_pytorchjob(
            **shared, priority_class=TRAINING_PRIORITY_CLASS, backoff_limit=where.backoff_limit
        )
    if launcher is None:
        from medgo.k8s.clients import kubernetes_clients

        clients = kubernetes_clients()
        make = TrainJobLauncher if where.backend == "trainjob" else PyTorchJobLauncher
        launcher = make(clients.custom, clients.core)
    name, namespace = where.job_name, where.namespace
    launcher.submit(job)
    previous = (
        signal.signal(signal.SIGTERM, _interrupt)
        if threading.current_thread() is threading.main_thread()
        else None
    )
    try:
        launcher.wait(
            name,
            namespace,
            timeout_s=where.timeout_s or 7 * 24 * 3600,
            pending_timeout_s=where.pending_timeout_s,
            restart_budget=where.backoff_limit,
        )
    except TrainingJobFailed as exc:
        deleted = exc.fail_fast and _delete_quietly(launcher, name, namespace)
        try:
            tail = launcher.logs(name, namespace, tail_lines=20) if not deleted else "(job deleted)"
        except Exception as log_exc:  # logs are a courtesy; the failure itself must surface
            tail = f"(master log unavailable: {log_exc})"
        raise MedgoError(
            f"{exc}{'; the job was deleted' if deleted else ''}\nlast lines of the master's log:\n{tail}"
        ) from None
    except TimeoutError as exc:
        launcher.delete(name, namespace)
        raise MedgoError(f"{exc}; the job was deleted") from None
    except ApiLost as exc:
        deleted = _delete_quietly(launcher, name, namespace)
        raise MedgoError(
            f"{exc}; {'the job was deleted' if deleted else 'could not delete the job'}"
        ) from None
    except RuntimeError as exc:  # the job vanished while we waited (deleted by someone else)
        raise MedgoError(str(exc)) from None
    except KeyboardInterrupt:  # KFP cancels a run by terminating the step: take the job down with it
        _delete_quietly(launcher, name, namespace)
        raise
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _delete_quietly(launcher, name: str, namespace: str) -> bool:
    """Delete the job; report instead of raise when the API refuses (the step is failing anyway)."""
    try:
        launcher.delete(name, namespace)
        return True
    except Exception as exc:  # noqa: BLE001
        log.error("could not delete the training job", extra=fields(job=name, error=str(exc)))
        return False


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signum}")
