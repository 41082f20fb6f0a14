"""Distributed training on Kubernetes as a Kubeflow PyTorchJob (``kubeflow.org/v1``, training-operator v1.9).

:func:`build_pytorchjob` turns training parameters into a PyTorchJob manifest (a plain dict, so it can be
validated against the CRD schema, printed as YAML or sent with the Kubernetes client), and
:class:`PyTorchJobLauncher` submits it, waits for the outcome and fetches the master's logs.

The builder runs whatever command it is given (as the Kubeflow SDKs take a container's command as
data); medgo's launcher passes its node entry, ``python -m medgo.train.node …``. The operator sets the
environment contract DESIGN.md describes in every pod: ``MASTER_ADDR``/``MASTER_PORT``, ``PET_NNODES``,
``PET_NPROC_PER_NODE`` (from ``spec.nprocPerNode``) and ``PET_NODE_RANK`` (the pod's *node* index:
master 0, worker i -> i + 1); the node entry reads them and execs ``torchrun``.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import urllib3
from kubernetes import client

from medgo.errors import InvalidSpec
from medgo.k8s._common import (
    Poller,
    condition,
    contains,
    is_conflict,
    is_not_found,
    is_transient,
    require_dns1035_label,
    require_dns1123_label,
    require_env_names,
    require_labels,
    require_pinned_image,
    require_quantity,
)
from medgo.k8s.names import PART_OF_LABELS, S3_SECRET, TRAINER_SERVICE_ACCOUNT
from medgo.logs import fields

log = logging.getLogger(__name__)

GROUP = "kubeflow.org"
VERSION = "v1"
PLURAL = "pytorchjobs"
KIND = "PyTorchJob"

#: The operator finds the training container and its rendezvous port by these names.
CONTAINER_NAME = "pytorch"
PORT_NAME = "pytorchjob-port"
PORT = 23456

#: Labels the training-operator puts on the pods it creates.
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"

#: Annotation holding the sha256 of the spec we submitted, so that a resubmission can tell "same job" from
#: "different job with the same name" even after the operator's webhook has added defaults to the spec.
SPEC_HASH_ANNOTATION = "medgo.io/spec-sha256"

#: Variables the operator injects; overriding them would break the rendezvous.
OPERATOR_ENV = frozenset(
    {
        "MASTER_ADDR",
        "MASTER_PORT",
        "WORLD_SIZE",
        "RANK",
        "PET_NNODES",
        "PET_NPROC_PER_NODE",
        "PET_NODE_RANK",
        "PET_MASTER_ADDR",
        "PET_MASTER_PORT",
    }
)

CONFIG_MOUNT_PATH = "/config"
SHM_VOLUME = "dshm"
CONFIG_VOLUME = "train-config"
_MAX_NNODES = 1024


def _validate(
    *,
    name: str,
    namespace: str,
    image: str,
    command: Sequence[str],
    nnodes: int,
    nproc_per_node: int,
    gpus_per_node: int,
    cpu: str,
    memory: str,
    shm_size: str,
    service_account: str,
    pvc_mounts: Mapping[str, str],
    s3_secret: str | None,
    env: Mapping[str, str],
    labels: Mapping[str, str],
    node_selector: Mapping[str, str],
    tolerations: Sequence[Any],
    priority_class: str | None,
    config_map: str | None,
    active_deadline_seconds: int | None,
    backoff_limit: int,
) -> None:
    for field, value in (
        ("nnodes", nnodes),
        ("nproc_per_node", nproc_per_node),
        ("gpus_per_node", gpus_per_node),
        ("backoff_limit", backoff_limit),
    ):
        if isinstance(value, bool) or not isinstance(value, int):
            raise InvalidSpec(f"{field} must be an int, got {value!r}")
    if not 1 <= nnodes <= _MAX_NNODES:
        raise InvalidSpec(f"nnodes must be between 1 and {_MAX_NNODES}, got {nnodes}")
    if nproc_per_node < 1:
        raise InvalidSpec(f"nproc_per_node must be >= 1, got {nproc_per_node}")
    if gpus_per_node < 0:
        raise InvalidSpec(f"gpus_per_node must be >= 0, got {gpus_per_node}")
    if gpus_per_node and nproc_per_node > gpus_per_node:
        raise InvalidSpec(
            f"nproc_per_node={nproc_per_node} exceeds gpus_per_node={gpus_per_node}: "
            "each training process needs its own GPU"
        )
    if backoff_limit < 0:
        raise InvalidSpec(f"backoff_limit must be >= 0, got {backoff_limit}")
    if active_deadline_seconds is not None and (
        isinstance(active_deadline_seconds, bool)
        or not isinstance(active_deadline_seconds, int)
        or active_deadline_seconds < 1
    ):
        raise InvalidSpec(
            f"active_deadline_seconds must be a positive int or None, got {active_deadline_seconds!r}"
        )

    # The operator names Services "<job>-master-0" and "<job>-worker-<i>"; they must stay DNS-1035 labels.
    longest_suffix = len(f"-worker-{nnodes - 2}") if nnodes > 1 else len("-master-0")
    require_dns1035_label(name, "job name", max_len=63 - longest_suffix)
    require_dns1123_label(namespace, "namespace")
    require_pinned_image(image)
    if isinstance(command, str) or not command or not all(isinstance(a, str) for a in command):
        raise InvalidSpec(f"command must be a non-empty list of strings, got {command!r}")
    for field, value in (("cpu", cpu), ("memory", memory), ("shm_size", shm_size)):
        require_quantity(value, field)
    if quantity_bytes(shm_size) >= quantity_bytes(memory):
        raise InvalidSpec(
            f"shm_size {shm_size} must be below memory {memory}: the memory-backed /dev/shm counts against the "
            "container's memory limit, so the processes would have nothing left (medgo plan sizes both)"
        )
    require_dns1123_label(service_account, "service_account")
    if s3_secret is not None:
        require_dns1123_label(s3_secret, "s3_secret")
    if priority_class is not None:
        require_dns1123_label(priority_class, "priority_class")
    if config_map is not None:
        require_dns1123_label(config_map, "config_map")
    require_env_names(env, reserved=OPERATOR_ENV)
    require_labels(labels)
    require_labels(node_selector)
    if not all(isinstance(t, dict) for t in tolerations):
        raise InvalidSpec(f"tolerations must be a list of toleration dicts, got {tolerations!r}")

    taken = {"/dev/shm"} | ({CONFIG_MOUNT_PATH} if config_map else set())
    for claim, mount_path in pvc_mounts.items():
        require_dns1123_label(claim, "PVC claim name")
        if claim in (SHM_VOLUME, CONFIG_VOLUME):
            raise InvalidSpec(f"PVC claim name {claim!r} clashes with a volume the job defines itself")
        if not isinstance(mount_path, str) or not mount_path.startswith("/"):
            raise InvalidSpec(f"mount path {mount_path!r} for PVC {claim!r} must be an absolute path")
        if mount_path.rstrip("/") in taken:
            raise InvalidSpec(f"mount path {mount_path!r} for PVC {claim!r} is already used")
        taken.add(mount_path.rstrip("/"))


_SUFFIXES = {
    "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60,
    "n": 1e-9, "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
}  # fmt: skip


def quantity_bytes(quantity: str) -> float:
    """A Kubernetes quantity (``"16Gi"``, ``"500M"``, ``"1e9"``) as a number."""
    require_quantity(quantity, "quantity")
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if quantity.endswith(suffix):
            return float(quantity[: -len(suffix)]) * _SUFFIXES[suffix]
    return float(quantity)


def build_pytorchjob(
    *,
    name: str,
    namespace: str,
    image: str,
    command: Sequence[str],
    nnodes: int,
    nproc_per_node: int,
    gpus_per_node: int = 0,
    cpu: str = "4",
    memory: str = "16Gi",
    shm_size: str = "8Gi",
    node_selector: dict[str, str] | None = None,
    tolerations: list[dict[str, Any]] | None = None,
    priority_class: str | None = None,
    service_account: str = TRAINER_SERVICE_ACCOUNT,
    pvc_mounts: dict[str, str] | None = None,
    s3_secret: str | None = S3_SECRET,
    env: dict[str, str] | None = None,
    labels: dict[str, str] | None = None,
    active_deadline_seconds: int | None = None,
    backoff_limit: int = 0,
    config_map: str | None = None,
) -> dict[str, Any]:
    """A PyTorchJob running ``command`` in the ``pytorch`` container of ``nnodes`` pods.

    One Master and ``nnodes - 1`` Workers (the Worker replica spec is omitted for a single node), each
    with ``nproc_per_node`` processes, ``gpus_per_node`` GPUs (``nvidia.com/gpu``), Guaranteed QoS
    (requests equal limits) and a memory-backed ``/dev/shm`` of ``shm_size`` (NCCL fails on the default
    64 MiB), which counts against ``memory``: size both with :func:`medgo.train.plan.plan`. Failed pods
    restart up to ``backoff_limit`` times, each restart resuming from the run's checkpoints. ``pvc_mounts`` maps claim names to mount paths (shared storage, so checkpoints survive a
    restart on another node); ``s3_secret`` is exposed as environment variables with ``envFrom``;
    ``config_map``, when given, is mounted read-only at ``/config``. Pods run as non-root with every
    capability dropped. Raises :class:`~medgo.errors.InvalidSpec` naming the bad parameter.
    """
    node_selector = dict(node_selector or {})
    tolerations = copy.deepcopy(list(tolerations or []))
    pvc_mounts = dict(pvc_mounts or {})
    env = dict(env or {})
    labels = dict(labels or {})
    _validate(
        name=name,
        namespace=namespace,
        image=image,
        command=command,
        nnodes=nnodes,
        nproc_per_node=nproc_per_node,
        gpus_per_node=gpus_per_node,
        cpu=cpu,
        memory=memory,
        shm_size=shm_size,
        service_account=service_account,
        pvc_mounts=pvc_mounts,
        s3_secret=s3_secret,
        env=env,
        labels=labels,
        node_selector=node_selector,
        tolerations=tolerations,
        priority_class=priority_class,
        config_map=config_map,
        active_deadline_seconds=active_deadline_seconds,
        backoff_limit=backoff_limit,
    )

    all_labels = {
        "app.kubernetes.io/name": "medgo",
        "app.kubernetes.io/component": "trainer",
        **PART_OF_LABELS,
        **labels,
    }
    resources: dict[str, str] = {"cpu": cpu, "memory": memory}
    if gpus_per_node:
        resources["nvidia.com/gpu"] = str(gpus_per_node)

    volumes: list[dict[str, Any]] = [
        {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory", "sizeLimit": shm_size}}
    ]
    mounts: list[dict[str, Any]] = [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}]
    for claim, mount_path in pvc_mounts.items():
        volumes.append({"name": claim, "persistentVolumeClaim": {"claimName": claim}})
        mounts.append({"name": claim, "mountPath": mount_path})
    if config_map:
        volumes.append({"name": CONFIG_VOLUME, "configMap": {"name": config_map}})
        mounts.append({"name": CONFIG_VOLUME, "mountPath": CONFIG_MOUNT_PATH, "readOnly": True})

    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": image,
        "imagePullPolicy": "IfNotPresent",
        "command": list(command),
        "ports": [{"name": PORT_NAME, "containerPort": PORT, "protocol": "TCP"}],
        "resources": {"requests": dict(resources), "limits": dict(resources)},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "privileged": False,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    # The operator appends its rendezvous variables (and PYTHONUNBUFFERED) to this list.
    if env:
        container["env"] = [{"name": k, "value": v} for k, v in env.items()]
    if s3_secret:
        container["envFrom"] = [{"secretRef": {"name": s3_secret}}]

    pod_spec: dict[str, Any] = {
        "serviceAccountName": service_account,
        "automountServiceAccountToken": False,  # training code never talks to the API server
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": 1000,
            "runAsGroup": 1000,
            "fsGroup": 1000,
            "fsGroupChangePolicy": "OnRootMismatch",  # no recursive chown of multi-TiB volumes on every start
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [container],
        "volumes": volumes,
    }
    if priority_class:
        pod_spec["priorityClassName"] = priority_class
    if node_selector:
        pod_spec["nodeSelector"] = node_selector
    if tolerations:
        pod_spec["tolerations"] = tolerations

    def replica(replicas: int) -> dict[str, Any]:
        return {
            "replicas": replicas,
            # Static rendezvous: if one pod restarts the others' collectives fail and they restart too;
            # backoffLimit bounds the restarts, and each restart resumes from the newest complete checkpoint.
            "restartPolicy": "OnFailure",
            "template": {"metadata": {"labels": dict(all_labels)}, "spec": copy.deepcopy(pod_spec)},
        }

    replica_specs = {"Master": replica(1)}
    if nnodes > 1:
        replica_specs["Worker"] = replica(nnodes - 1)

    run_policy: dict[str, Any] = {
        # Remove still-running pods when the job ends (frees GPUs); keep finished ones for their logs.
        "cleanPodPolicy": "Running",
        "backoffLimit": backoff_limit,
    }
    if active_deadline_seconds is not None:
        run_policy["activeDeadlineSeconds"] = active_deadline_seconds

    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": {"name": name, "namespace": namespace, "labels": dict(all_labels)},
        "spec": {
            "nprocPerNode": str(nproc_per_node),
            "runPolicy": run_policy,
            "pytorchReplicaSpecs": replica_specs,
        },
    }


def spec_hash(job: Mapping[str, Any]) -> str:
    """sha256 of a job's spec in canonical JSON (key order does not matter)."""
    return hashlib.sha256(json.dumps(job["spec"], sort_keys=True, separators=(",", ":")).encode()).hexdigest()


class JobSpecConflict(RuntimeError):
    """A job with the same name exists and runs a different spec; refusing to reuse or replace it."""


class TrainingJobFailed(RuntimeError):
    """The job failed: the operator's ``Failed`` condition, or a pod state that cannot recover.

    ``reason`` is the operator's reason or the pod's (``Unschedulable``, ``ImagePullBackOff``,
    ``OOMKilled``, ``CrashLoopBackOff``, ``PendingTooLong``); ``fail_fast`` is True when the launcher
    decided from pod status before the operator did (the job is then still there and doomed).
    """

    def __init__(
        self, kind: str, name: str, namespace: str, reason: str, message: str, fail_fast: bool = False
    ):
        super().__init__(f"{kind} {namespace}/{name} failed: {reason}: {message}")
        self.reason, self.message, self.fail_fast = reason, message, fail_fast


#: The name the PyTorchJob path has always raised.
PyTorchJobFailed = TrainingJobFailed


class ApiLost(RuntimeError):
    """The API server stayed unreachable for longer than the launcher's patience."""


@dataclass(frozen=True)
class JobKind:
    """How one training-job API is addressed: its resource, its pods, its master's container, its outcome."""

    group: str
    version: str
    plural: str
    kind: str
    pod_selector: Callable[[str], str]
    master_selector: Callable[[str], str]
    container: str
    succeeded: str = "Succeeded"
    failed: str = "Failed"


PYTORCHJOB = JobKind(
    GROUP,
    VERSION,
    PLURAL,
    KIND,
    pod_selector=lambda name: f"{JOB_NAME_LABEL}={name}",
    master_selector=lambda name: f"{JOB_NAME_LABEL}={name},{REPLICA_TYPE_LABEL}=master",
    container=CONTAINER_NAME,
)

#: Waiting reasons after which a container does not start without someone fixing something.
STUCK_WAITING = frozenset(
    {
        "ImagePullBackOff",
        "ErrImagePull",
        "InvalidImageName",
        "CreateContainerConfigError",
        "CreateContainerError",
    }
)


@dataclass
class PodWatch:
    """What the launcher remembers about pods between checks: when each was first seen Pending."""

    pending_since: dict[str, float] = dataclasses.field(default_factory=dict)


def pod_failure(
    pod: client.V1Pod, *, now: float, seen: PodWatch, pending_timeout_s: float, restart_budget: int
) -> tuple[str, str] | None:
    """``(reason, message)`` when ``pod`` is in a state training cannot recover from, else None.

    Unschedulable, an image that cannot be pulled, a container OOM-killed (now or in its last run),
    a crash loop that used up the job's restarts, or Pending for longer than ``pending_timeout_s``.
    """
    name = pod.metadata.name
    status = pod.status or client.V1PodStatus()
    statuses = list(status.init_container_statuses or []) + list(status.container_statuses or [])
    limits = {
        c.name: ((c.resources.limits or {}).get("memory") if c.resources else None)
        for c in (pod.spec.containers if pod.spec else [])
    }
    for cs in statuses:
        for terminated in (cs.state and cs.state.terminated, cs.last_state and cs.last_state.terminated):
            if terminated and terminated.reason == "OOMKilled":
                return (
                    "OOMKilled",
                    f"pod {name} container {cs.name} was killed for exceeding its memory limit "
                    f"({limits.get(cs.name) or 'none set'}); raise the pod memory (medgo plan sizes it)",
                )
        waiting = cs.state and cs.state.waiting
        if waiting and waiting.reason in STUCK_WAITING:
            return waiting.reason, f"pod {name} container {cs.name}: {waiting.message or waiting.reason}"
        if waiting and waiting.reason == "CrashLoopBackOff" and (cs.restart_count or 0) >= restart_budget:
            last = cs.last_state and cs.last_state.terminated
            detail = f"; last exit code {last.exit_code} ({last.reason or 'Error'})" if last else ""
            return (
                "CrashLoopBackOff",
                f"pod {name} container {cs.name} restarted {cs.restart_count} times{detail}",
            )
    if status.phase == "Pending":
        for cond in status.conditions or []:
            if cond.type == "PodScheduled" and cond.status == "False" and cond.reason == "Unschedulable":
                return "Unschedulable", f"pod {name}: {cond.message or 'no node fits'}"
        first = seen.pending_since.setdefault(name, now)
        if now - first > pending_timeout_s:
            why = "; ".join(f"{c.type}={c.status} {c.reason or ''}".strip() for c in status.conditions or [])
            return (
                "PendingTooLong",
                f"pod {name} still Pending after {pending_timeout_s:g}s ({why or 'no conditions'})",
            )
    else:
        seen.pending_since.pop(name, None)
    return None


class TrainingJobLauncher:
    """Submit, follow, read logs of and delete one kind of training job through the Kubernetes API.

    ``submit`` is idempotent so that a retried pipeline step attaches to the job its previous attempt
    started instead of training twice. ``wait`` follows the job with a watch of at most
    ``watch_timeout_s`` per connection (reconnecting from the last ``resourceVersion``, relisting after
    ``410 Gone``) and checks its pods every ``poll_s``, ending early with the pod's reason when one
    cannot recover. Needs the ``medgo-pipeline`` Role: the
    job kind's create/get/list/watch/delete, pods list, pods/log get.
    """

    def __init__(
        self,
        api: client.CustomObjectsApi,
        core: client.CoreV1Api,
        *,
        kind: JobKind = PYTORCHJOB,
        poller: Poller | None = None,
        watch_timeout_s: int = 60,
        poll_s: float = 30.0,
        api_patience_s: float = 600.0,
    ):
        self.api, self.core, self.kind = api, core, kind
        self.poller = poller or Poller()
        self.watch_timeout_s, self.poll_s, self.api_patience_s = watch_timeout_s, poll_s, api_patience_s

    def _args(self, namespace: str) -> tuple[str, str, str, str]:
        return self.kind.group, self.kind.version, namespace, self.kind.plural

    def submit(self, job: Mapping[str, Any]) -> str:
        """Create ``job`` and return its name; reuse an existing job with the same name and spec.

        A job of that name and spec whose attempt Failed is deleted and created again (a retried step
        trains again, resuming from its checkpoints). Raises :class:`JobSpecConflict` when a job of that
        name exists with a different spec.
        """
        body = copy.deepcopy(dict(job))
        meta = body["metadata"]
        name, namespace = meta["name"], meta["namespace"]
        digest = spec_hash(body)
        meta.setdefault("annotations", {})[SPEC_HASH_ANNOTATION] = digest
        try:
            self.api.create_namespaced_custom_object(*self._args(namespace), body)
        except client.exceptions.ApiException as exc:
            if not is_conflict(exc):
                raise
            existing = self.api.get_namespaced_custom_object(*self._args(namespace), name)
            existing_digest = (existing.get("metadata", {}).get("annotations") or {}).get(
                SPEC_HASH_ANNOTATION
            )
            same = (
                existing_digest == digest if existing_digest else contains(existing.get("spec"), body["spec"])
            )
            if not same:
                raise JobSpecConflict(
                    f"{self.kind.kind} {namespace}/{name} already exists with a different spec; "
                    "delete it or choose another name"
                ) from exc
            failed = condition(existing, self.kind.failed)
            if failed and failed.get("status") == "True":
                log.info(
                    "replacing failed job", extra=fields(kind=self.kind.kind, job=name, namespace=namespace)
                )
                self.delete(name, namespace)
                self._wait_deleted(name, namespace)
                self.api.create_namespaced_custom_object(*self._args(namespace), body)
                return name
            log.info("reusing existing job", extra=fields(kind=self.kind.kind, job=name, namespace=namespace))
            return name
        log.info("created job", extra=fields(kind=self.kind.kind, job=name, namespace=namespace))
        return name

    def _wait_deleted(self, name: str, namespace: str, timeout_s: float = 600, poll_s: float = 5.0) -> None:
        """Poll until the job is gone (deletion waits for its pods' finalizers)."""
        deadline = self.poller.clock() + timeout_s
        while True:
            try:
                self.api.get_namespaced_custom_object(*self._args(namespace), name)
            except client.exceptions.ApiException as exc:
                if is_not_found(exc):
                    return
                if not is_transient(exc):
                    raise
            remaining = deadline - self.poller.clock()
            if remaining <= 0:
                raise TimeoutError(
                    f"{self.kind.kind} {namespace}/{name} still exists {timeout_s:g}s after deletion"
                )
            self.poller.sleep(min(poll_s, remaining))

    def _outcome(self, job: Mapping[str, Any], name: str, namespace: str) -> bool:
        """True when the job succeeded; raises :class:`TrainingJobFailed` when it failed."""
        failed = condition(job, self.kind.failed)
        if failed and failed.get("status") == "True":
            raise TrainingJobFailed(
                self.kind.kind, name, namespace, failed.get("reason", ""), failed.get("message", "")
            )
        done = condition(job, self.kind.succeeded)
        return bool(done and done.get("status") == "True")

    def check_pods(
        self, name: str, namespace: str, seen: PodWatch, *, pending_timeout_s: float, restart_budget: int
    ) -> None:
        """Raise :class:`TrainingJobFailed` (``fail_fast``) if one of the job's pods cannot recover."""
        pods = self.core.list_namespaced_pod(namespace, label_selector=self.kind.pod_selector(name)).items
        now = self.poller.clock()
        for pod in pods:
            found = pod_failure(
                pod, now=now, seen=seen, pending_timeout_s=pending_timeout_s, restart_budget=restart_budget
            )
            if found:
                raise TrainingJobFailed(self.kind.kind, name, namespace, *found, fail_fast=True)

    def _watch(self, name: str, namespace: str, resource_version: str, timeout_s: int):
        """Events of the job from ``resource_version`` on, until the server ends the watch."""
        from kubernetes.watch.watch import iter_resp_lines

        resp = self.api.list_namespaced_custom_object(
            *self._args(namespace),
            field_selector=f"metadata.name={name}",
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=timeout_s,
            _preload_content=False,
        )
        try:
            for line in iter_resp_lines(resp):
                yield json.loads(line)
        finally:
            resp.close()
            resp.release_conn()

    def _list(self, name: str, namespace: str) -> tuple[dict, str]:
        """The job and the collection's current ``resourceVersion`` to watch from (a relist)."""
        listing = self.api.list_namespaced_custom_object(
            *self._args(namespace), field_selector=f"metadata.name={name}"
        )
        items = listing.get("items") or []
        if not items:
            raise RuntimeError(f"{self.kind.kind} {namespace}/{name} no longer exists")
        return items[0], (listing.get("metadata") or {}).get("resourceVersion", "")

    def wait(
        self,
        name: str,
        namespace: str,
        timeout_s: float = 7 * 24 * 3600,
        *,
        pending_timeout_s: float = 1800.0,
        restart_budget: int = 0,
        poll_s: float | None = None,
    ) -> dict:
        """Follow the job until it succeeds; return the final object.

        Raises :class:`TrainingJobFailed` with the operator's reason, or with a pod's reason as soon as
        one cannot recover (``fail_fast``); ``RuntimeError`` if the job disappears; ``TimeoutError``
        after ``timeout_s``; :class:`ApiLost` when the API server stays unreachable for
        ``api_patience_s``. Dropped watches resume from the last ``resourceVersion`` seen, and a
        ``410 Gone`` lists the job again.
        """
        poll_s = self.poll_s if poll_s is None else poll_s
        deadline = self.poller.clock() + timeout_s
        seen = PodWatch()
        job: dict | None = None
        resource_version = None
        next_pod_check = self.poller.clock()
        down_since: float | None = None
        backoff = 1.0
        last_state = None
        while True:
            try:
                if resource_version is None:
                    job, resource_version = self._list(name, namespace)
                    last_state = _latest_true_condition(job)
                    if self._outcome(job, name, namespace):
                        return job
                if self.poller.clock() >= next_pod_check:
                    self.check_pods(
                        name,
                        namespace,
                        seen,
                        pending_timeout_s=pending_timeout_s,
                        restart_budget=restart_budget,
                    )
                    next_pod_check = self.poller.clock() + poll_s
                remaining = deadline - self.poller.clock()
                if remaining <= 0:
                    raise TimeoutError(
                        f"{self.kind.kind} {namespace}/{name} did not finish within {timeout_s:g}s "
                        f"(last state: {last_state})"
                    )
                window = max(1, int(min(self.watch_timeout_s, remaining)))
                started = self.poller.clock()
                for event in self._watch(name, namespace, resource_version, window):
                    obj = event.get("object") or {}
                    if event.get("type") == "ERROR":
                        if obj.get("code") == 410:  # our resourceVersion is too old: list again
                            resource_version = None
                            break
                        raise client.exceptions.ApiException(
                            status=obj.get("code"), reason=obj.get("message")
                        )
                    resource_version = obj.get("metadata", {}).get("resourceVersion", resource_version)
                    if event.get("type") == "BOOKMARK":
                        continue
                    if event.get("type") == "DELETED":
                        raise RuntimeError(f"{self.kind.kind} {namespace}/{name} no longer exists")
                    job = obj
                    state = _latest_true_condition(job)
                    if state != last_state:
                        log.info("job state", extra=fields(kind=self.kind.kind, job=name, state=state))
                        last_state = state
                    if self._outcome(job, name, namespace):
                        log.info("job succeeded", extra=fields(kind=self.kind.kind, job=name))
                        return job
                down_since, backoff = None, 1.0
                # A watch that ended early (or a clock the watch does not move) waits out the poll interval.
                elapsed = self.poller.clock() - started
                if resource_version is not None and elapsed < poll_s:
                    self.poller.sleep(min(poll_s - elapsed, max(deadline - self.poller.clock(), 0.001)))
            except (TrainingJobFailed, TimeoutError):
                raise
            except (client.exceptions.ApiException, urllib3.exceptions.HTTPError, OSError) as exc:
                if isinstance(exc, client.exceptions.ApiException) and not is_transient(exc):
                    raise
                now = self.poller.clock()
                down_since = down_since if down_since is not None else now
                if now - down_since >= self.api_patience_s:
                    raise ApiLost(
                        f"the Kubernetes API was unreachable for {now - down_since:.0f}s while following "
                        f"{self.kind.kind} {namespace}/{name}: {exc}"
                    ) from exc
                log.warning(
                    "watch interrupted; reconnecting", extra=fields(job=name, error=type(exc).__name__)
                )
                self.poller.sleep(min(backoff, max(deadline - now, 0.001)))
                backoff = min(backoff * 2, 30.0)

    def logs(self, name: str, namespace: str, tail_lines: int | None = None) -> str:
        """The log of the master pod's training container (rank 0 writes the training progress)."""
        selector = self.kind.master_selector(name)
        pods = self.core.list_namespaced_pod(namespace, label_selector=selector).items
        if not pods:
            raise LookupError(
                f"no master pod found for {self.kind.kind} {namespace}/{name} (selector {selector})"
            )
        kwargs: dict[str, Any] = {"container": self.kind.container}
        if tail_lines is not None:
            kwargs["tail_lines"] = tail_lines
        return self.core.read_namespaced_pod_log(pods[0].metadata.name, namespace, **kwargs)

    def delete(self, name: str, namespace: str) -> bool:
        """Delete the job and its pods; return False if it did not exist."""
        try:
            self.api.delete_namespaced_custom_object(
                *self._args(namespace), name, propagation_policy="Background"
            )
        except client.exceptions.ApiException as exc:
            if is_not_found(exc):
                return False
            raise
        log.info("deleted job", extra=fields(kind=self.kind.kind, job=name, namespace=namespace))
        return True


class PyTorchJobLauncher(TrainingJobLauncher):
    """:class:`TrainingJobLauncher` for Kubeflow PyTorchJobs (training-operator v1)."""

    def __init__(self, api: client.CustomObjectsApi, core: client.CoreV1Api, **kwargs):
        super().__init__(api, core, kind=PYTORCHJOB, **kwargs)


def _latest_true_condition(job: Mapping[str, Any]) -> str | None:
    true = [c for c in (job.get("status") or {}).get("conditions") or [] if c.get("status") == "True"]
    return true[-1].get("type") if true else None
