"""Distributed training as a Kubeflow Trainer v2 TrainJob (``trainer.kubeflow.org/v1alpha1``).

:func:`build_trainjob` turns the same parameters as :func:`~medgo.k8s.pytorchjob.build_pytorchjob` into a
TrainJob on the ``torch-distributed`` ClusterTrainingRuntime (torchrun; the ``deepspeed-distributed``
runtime uses an MPI launcher instead). The runtime's JobSet runs ``numNodes`` pods of its ``node``
replicated job; its torch plugin sets ``PET_NNODES``, ``PET_NPROC_PER_NODE`` (possibly ``auto``),
``PET_NODE_RANK``, ``PET_MASTER_ADDR`` and ``PET_MASTER_PORT``, which medgo's node entry reads like a
PyTorchJob's.

The pod settings the TrainJob's ``trainer`` cannot carry (the service account, the data and checkpoint
PVCs, a memory-backed ``/dev/shm`` and their mounts, the GPU node pool) go where the cluster's Trainer
release reads them (``trainer_api``):

- ``v2.2+`` (default; v2.2, v2.3): one ``runtimePatches`` entry owned by :data:`PATCH_MANAGER`, patching
  the pod template of the runtime's ``node`` job. ``trainer.numProcPerNode`` is an integer there; ``auto``
  is the torch runtime's default, so it is left out.
- ``v2.1``: ``podTemplateOverrides`` (``targetJobs`` + a pod ``spec``).
- ``v2.0``: ``podSpecOverrides`` (``targetJobs`` + the pod fields inline).

The S3 Secret's keys reach the ``node`` container as ``trainer.env`` entries with ``secretKeyRef`` in
every release: the container patches of all three accept no ``envFrom``, and v2.2+ refuses env on the
``node`` container outside ``trainer``. Restarts are the runtime's JobSet failure policy; each restart
resumes from the run's checkpoints.

:data:`TRAINJOB` tells :class:`~medgo.k8s.pytorchjob.TrainingJobLauncher` how to follow one: conditions
``Complete`` / ``Failed``, pods by their JobSet label, the master is completion index 0 of ``node``.
"""

from __future__ import annotations

import copy
import typing
from collections.abc import Sequence
from typing import Any

from medgo.errors import InvalidSpec
from medgo.k8s._common import (
    require_dns1035_label,
    require_dns1123_label,
    require_env_names,
    require_labels,
    require_node_container,
)
from medgo.k8s.names import (
    GPU_RESOURCE,
    PART_OF_LABELS,
    S3_SECRET,
    S3_SECRET_KEYS,
    TRAINER_SERVICE_ACCOUNT,
    TrainerApi,
)
from medgo.k8s.pytorchjob import SHM_VOLUME, JobKind, TrainingJobLauncher

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
#: Owner of medgo's ``runtimePatches`` entry (Trainer v2.2+ wants a domain-prefixed path).
PATCH_MANAGER = "medgo.io/train-launcher"
#: S3 Secret keys a pod may lack (the endpoint, for AWS itself); the credentials are required.
OPTIONAL_S3_KEYS = frozenset({"AWS_ENDPOINT_URL"})
#: Every ``trainer_api`` value :func:`build_trainjob` knows.
TRAINER_APIS: frozenset[str] = frozenset(typing.get_args(TrainerApi))

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
    trainer_api: TrainerApi = "v2.2+",
) -> dict[str, Any]:
    """A TrainJob running ``command`` on ``nnodes`` pods of the ``torch-distributed`` runtime.

    ``nproc_per_node`` is an int or ``"auto"`` (one process per GPU). Requests equal limits; ``/dev/shm``
    is memory-backed and counts against ``memory``. ``trainer_api`` picks the field the pod settings go
    in (see the module docstring). Raises :class:`~medgo.errors.InvalidSpec` naming the bad parameter.
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
    require_node_container(image, command, cpu, memory, shm_size)
    require_dns1123_label(service_account, "service_account")
    if trainer_api not in TRAINER_APIS:
        raise InvalidSpec(f"trainer_api must be one of {sorted(TRAINER_APIS)}, got {trainer_api!r}")
    require_env_names(env, reserved=TRAINER_ENV | (frozenset(S3_SECRET_KEYS) if s3_secret else frozenset()))
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
    pod: dict[str, Any] = {
        "serviceAccountName": service_account,
        "volumes": volumes,
        "containers": [{"name": CONTAINER_NAME, "volumeMounts": mounts}],
    }
    if node_selector:
        require_labels(node_selector)
        pod["nodeSelector"] = dict(node_selector)
    if tolerations:
        pod["tolerations"] = copy.deepcopy(list(tolerations))
    trainer: dict[str, Any] = {
        "image": image,
        "command": list(command),
        "numNodes": nnodes,
        "resourcesPerNode": {"requests": dict(resources), "limits": dict(resources)},
    }
    if trainer_api != "v2.2+" or nproc_per_node != "auto":
        trainer["numProcPerNode"] = nproc_per_node
    trainer_env = [{"name": k, "value": v} for k, v in env.items()]
    if s3_secret:
        require_dns1123_label(s3_secret, "s3_secret")
        trainer_env += [
            {
                "name": key,
                "valueFrom": {
                    "secretKeyRef": {"name": s3_secret, "key": key, "optional": key in OPTIONAL_S3_KEYS}
                },
            }
            for key in S3_SECRET_KEYS
        ]
    if trainer_env:
        trainer["env"] = trainer_env
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
            **_pod_settings(pod, trainer_api),
        },
    }


def _pod_settings(pod: dict[str, Any], trainer_api: TrainerApi) -> dict[str, Any]:
    """The TrainJob ``spec`` field that applies ``pod`` (pod-spec fields) to the runtime's ``node`` job."""
    target = [{"name": NODE_JOB}]
    if trainer_api == "v2.0":
        return {"podSpecOverrides": [{"targetJobs": target, **pod}]}
    if trainer_api == "v2.1":
        return {"podTemplateOverrides": [{"targetJobs": target, "spec": pod}]}
    node_job = {"name": NODE_JOB, "template": {"spec": {"template": {"spec": pod}}}}
    return {
        "runtimePatches": [
            {
                "manager": PATCH_MANAGER,
                "trainingRuntimeSpec": {"template": {"spec": {"replicatedJobs": [node_job]}}},
            }
        ]
    }


class TrainJobLauncher(TrainingJobLauncher):
    """:class:`~medgo.k8s.pytorchjob.TrainingJobLauncher` for Kubeflow Trainer v2 TrainJobs."""

    def __init__(self, api, core, **kwargs):
        super().__init__(api, core, kind=TRAINJOB, **kwargs)
