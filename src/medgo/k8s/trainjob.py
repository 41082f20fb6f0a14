"""Distributed training as a Kubeflow Trainer v2 TrainJob (``trainer.kubeflow.org/v1alpha1``).

:func:`build_trainjob` turns the same parameters as :func:`~medgo.k8s.pytorchjob.build_pytorchjob` into a
TrainJob on the ``torch-distributed`` ClusterTrainingRuntime (torchrun; the ``deepspeed-distributed``
runtime uses an MPI launcher instead). The runtime's JobSet runs ``numNodes`` pods of its ``node``
replicated job; its torch plugin sets ``PET_NNODES``, ``PET_NPROC_PER_NODE`` (possibly ``auto``),
``PET_NODE_RANK``, ``PET_MASTER_ADDR`` and ``PET_MASTER_PORT``, which medgo's node entry reads like a
PyTorchJob's. Volumes (the data and checkpoint PVCs, a memory-backed ``/dev/shm``), the S3 Secret, the
service account and the GPU node pool go in ``podSpecOverrides`` targeting that job (the field of the
vendored v1alpha1 schema; Trainer v2.2 renamed it ``runtimePatches``). Restarts are the runtime's JobSet
failure policy; each restart resumes from the run's checkpoints.

:data:`TRAINJOB` tells :class:`~medgo.k8s.pytorchjob.TrainingJobLauncher` how to follow one: conditions
``Complete`` / ``Failed``, pods by their JobSet label, the master is completion index 0 of ``node``.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from medgo.errors import InvalidSpec
from medgo.k8s._common import (
    require_dns1035_label,
    require_dns1123_label,
    require_env_names,
    require_labels,
    require_pinned_image,
    require_quantity,
)
from medgo.k8s.names import GPU_RESOURCE, PART_OF_LABELS, S3_SECRET, TRAINER_SERVICE_ACCOUNT
from medgo.k8s.pytorchjob import SHM_VOLUME, JobKind, TrainingJobLauncher, quantity_bytes

GROUP = "trainer.kubeflow.org"
VERSION = "v1alpha1"
PLURAL = "trainjobs"
KIND = "TrainJob"
RUNTIME = "torch-distributed"
RUNTIME_KIND = "ClusterTrainingRuntime"
#: The runtime's replicated job and its training container.
NODE_JOB = "node"
CONTAINER_NAME = "node"
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"
REPLICATED_JOB_LABEL = "jobset.sigs.k8s.io/replicatedjob-name"
COMPLETION_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"

#: Variables Trainer v2's torch plugin injects.
TRAINER_ENV = frozenset(
    {"PET_NNODES", "PET_NPROC_PER_NODE", "PET_NODE_RANK", "PET_MASTER_ADDR", "PET_MASTER_PORT"}
)

TRAINJOB = JobKind(
    GROUP,
    VERSION,
    PLURAL,
    KIND,
    pod_selector=lambda name: f"{JOBSET_NAME_LABEL}={name}",
    master_selector=lambda name: (
        f"{JOBSET_NAME_LABEL}={name},{REPLICATED_JOB_LABEL}={NODE_JOB},{COMPLETION_INDEX_LABEL}=0"
    ),
    container=CONTAINER_NAME,
    succeeded="Complete",
)


def build_trainjob(
    *,
    name: str,
    namespace: str,
    image: str,
    command: Sequence[str],
    nnodes: int,
    nproc_per_node: int | str,
    gpus_per_node: int = 0,
    cpu: str = "4",
    memory: str = "16Gi",
    shm_size: str = "8Gi",
    node_selector: dict[str, str] | None = None,
    tolerations: list[dict[str, Any]] | None = None,
    service_account: str = TRAINER_SERVICE_ACCOUNT,
    pvc_mounts: dict[str, str] | None = None,
    s3_secret: str | None = S3_SECRET,
    env: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    runtime: str = RUNTIME,
) -> dict[str, Any]:
    """A TrainJob running ``command`` on ``nnodes`` pods of the ``torch-distributed`` runtime.

    ``nproc_per_node`` is an int or ``"auto"`` (one process per GPU). Requests equal limits; ``/dev/shm``
    is memory-backed and counts against ``memory``. Raises :class:`~medgo.errors.InvalidSpec` naming the
    bad parameter.
    """
    pvc_mounts, env, labels = dict(pvc_mounts or {}), dict(env or {}), dict(labels or {})
    if isinstance(nnodes, bool) or not isinstance(nnodes, int) or not 1 <= nnodes <= 1024:
        raise InvalidSpec(f"nnodes must be an int between 1 and 1024, got {nnodes!r}")
    if nproc_per_node != "auto" and (
        isinstance(nproc_per_node, bool) or not isinstance(nproc_per_node, int) or nproc_per_node < 1
    ):
        raise InvalidSpec(f"nproc_per_node must be a positive int or 'auto', got {nproc_per_node!r}")
    if gpus_per_node and isinstance(nproc_per_node, int) and nproc_per_node > gpus_per_node:
        raise InvalidSpec(f"nproc_per_node={nproc_per_node} exceeds gpus_per_node={gpus_per_node}")
    require_dns1035_label(name, "job name", max_len=40)  # JobSet names pods <job>-node-<i>-<j>-<suffix>
    require_dns1123_label(namespace, "namespace")
    require_pinned_image(image)
    if isinstance(command, str) or not command or not all(isinstance(a, str) for a in command):
        raise InvalidSpec(f"command must be a non-empty list of strings, got {command!r}")
    for field, value in (("cpu", cpu), ("memory", memory), ("shm_size", shm_size)):
        require_quantity(value, field)
    if quantity_bytes(shm_size) >= quantity_bytes(memory):
        raise InvalidSpec(
            f"shm_size {shm_size} must be below memory {memory}: the memory-backed /dev/shm counts against "
            "the container's memory limit"
        )
    require_dns1123_label(service_account, "service_account")
    require_env_names(env, reserved=TRAINER_ENV)
    require_labels(labels)
    for claim, mount_path in pvc_mounts.items():
        require_dns1123_label(claim, "PVC claim name")
        if not isinstance(mount_path, str) or not mount_path.startswith("/") or mount_path == "/dev/shm":
            raise InvalidSpec(
                f"mount path {mount_path!r} for PVC {claim!r} must be an absolute path other than /dev/shm"
            )

    resources: dict[str, str] = {"cpu": cpu, "memory": memory}
    if gpus_per_node:
        resources[GPU_RESOURCE] = str(gpus_per_node)
    volumes = [{"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": shm_size}}]
    mounts = [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}]
    for claim, mount_path in pvc_mounts.items():
        volumes.append({"name": claim, "persistentVolumeClaim": {"claimName": claim}})
        mounts.append({"name": claim, "mountPath": mount_path})
    container: dict[str, Any] = {"name": CONTAINER_NAME, "volumeMounts": mounts}
    if s3_secret:
        require_dns1123_label(s3_secret, "s3_secret")
        container["envFrom"] = [{"secretRef": {"name": s3_secret}}]
    override: dict[str, Any] = {
        "targetJobs": [{"name": NODE_JOB}],
        "serviceAccountName": service_account,
        "volumes": volumes,
        "containers": [container],
    }
    if node_selector:
        require_labels(node_selector)
        override["nodeSelector"] = dict(node_selector)
    if tolerations:
        override["tolerations"] = copy.deepcopy(list(tolerations))
    trainer: dict[str, Any] = {
        "image": image,
        "command": list(command),
        "numNodes": nnodes,
        "numProcPerNode": nproc_per_node,
        "resourcesPerNode": {"requests": dict(resources), "limits": dict(resources)},
    }
    if env:
        trainer["env"] = [{"name": k, "value": v} for k, v in env.items()]
    all_labels = {
        "app.kubernetes.io/name": "medgo",
        "app.kubernetes.io/component": "trainer",
        **PART_OF_LABELS,
    }
    all_labels.update(labels)
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": all_labels},
        "spec": {
            "runtimeRef": {"apiGroup": GROUP, "kind": RUNTIME_KIND, "name": runtime},
            "trainer": trainer,
            "podSpecOverrides": [override],
        },
    }


class TrainJobLauncher(TrainingJobLauncher):
    """:class:`~medgo.k8s.pytorchjob.TrainingJobLauncher` for Kubeflow Trainer v2 TrainJobs."""

    def __init__(self, api, core, **kwargs):
        super().__init__(api, core, kind=TRAINJOB, **kwargs)
