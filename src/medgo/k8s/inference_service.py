"""Serving on KServe: InferenceService manifests (``serving.kserve.io/v1beta1``) and canary deployment.

Two runtimes are supported:

* ``medgo-cpu`` -- medgo's own ServingRuntime (``manifests/base/serving-runtime.yaml``): the ``medgo.serve``
  KServe model server on CPU, for development and small models. It serves one model directory, so a LoRA
  adapter has to be exported merged into the model first.
* ``huggingface-vllm`` -- KServe's Hugging Face ClusterServingRuntime (``kserve-huggingfaceserver``) with the
  vLLM backend on GPUs. A LoRA adapter is served next to the base model: both are downloaded with the
  predictor's ``storageUris`` (base under ``/mnt/models/base``, adapter under ``/mnt/models/adapter``; KServe
  requires a common parent directory and forbids mixing ``storageUri`` with ``storageUris``) and vLLM gets
  ``--enable-lora --lora-modules=<name>-lora=/mnt/models/adapter``. Clients select the adapter by sending
  model ``<name>-lora`` and the base model by ``<name>``.

The builder returns the *complete* predictor for the runtime (runtime, arguments, storage URIs, adapter
modules, resources, node pool, priority class, service account, autoscaling), so a rollout ships exactly
what was built and tested, never a patch merged into whatever the service held before.

Canaries depend on KServe's deployment mode (annotation ``serving.kserve.io/deploymentMode``):

* **Serverless** (Knative): applying a changed spec with ``canaryTrafficPercent: N`` sends N % of traffic
  to the new revision and the rest to the last revision rolled out at 100 %. *Promote* removes
  ``canaryTrafficPercent``; *rollback* sets it to 0. Tag routing gives the new revision its own URL.
* **Standard** (raw Deployments, KServe >= 0.20): ``spec.canary: [{trafficPercent, predictor}]`` runs
  the new predictor as its own Deployment and Service ``<isvc>-<canary name>-predictor`` next to the
  stable one. *Promote* makes it the stable predictor (same name: KServe retargets without a restart)
  and drops the canary; *rollback* drops the canary. Older KServe silently ignores canaries in this
  mode; :meth:`InferenceServiceDeployer.accepts_canary` detects that with a server-side dry run.

Autoscaling is KServe's own: in Serverless mode the concurrency autoscaler with ``containerConcurrency``
= the server's batch size + queue bound (the most a replica holds before it would answer 503, so
Knative buffers and scales instead) and ``scaleTarget`` = the batch size (a replica is added once
batches are full); in Standard mode the HPA on CPU utilisation.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

from kubernetes import client

from medgo.errors import InvalidSpec
from medgo.k8s._common import (
    Poller,
    condition,
    is_conflict,
    is_not_found,
    is_transient,
    merge_patch_to,
    require_dns1035_label,
    require_dns1123_label,
    require_labels,
    require_quantity,
)
from medgo.k8s.names import (
    CPU_MODEL_FORMAT,
    CPU_SERVING_RUNTIME,
    GPU_RESOURCE,
    PART_OF_LABELS,
    SERVING_SERVICE_ACCOUNT,
    ServingRuntime,
)
from medgo.logs import fields

log = logging.getLogger(__name__)

GROUP = "serving.kserve.io"
VERSION = "v1beta1"
PLURAL = "inferenceservices"
KIND = "InferenceService"

#: KServe's ClusterServingRuntime for Hugging Face models (installed with KServe).
HF_RUNTIME = "kserve-huggingfaceserver"
HF_MODEL_FORMAT = "huggingface"

MODEL_ROOT = "/mnt/models"
BASE_MODEL_DIR = f"{MODEL_ROOT}/base"
ADAPTER_DIR = f"{MODEL_ROOT}/adapter"
MAX_GPUS = 8

# Knative names the first revision "<name>-predictor-00001", and revision names are 63-character labels.
_MAX_NAME_LEN = 63 - len("-predictor-00001")
_STORAGE_SCHEMES = (
    "s3://",
    "gs://",
    "pvc://",
    "hf://",
    "https://",
    "http://",
    "oci://",
    "hdfs://",
    "webhdfs://",
    "azureblob://",
)

DEFAULT_RESOURCES: dict[str, dict[str, dict[str, str]]] = {
    "medgo-cpu": {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"cpu": "2", "memory": "4Gi"}},
    "huggingface-vllm": {
        "requests": {"cpu": "8", "memory": "64Gi", GPU_RESOURCE: "1"},
        "limits": {"cpu": "8", "memory": "64Gi", GPU_RESOURCE: "1"},
    },
}


def _validate_resources(resources: Mapping[str, Any], runtime: str) -> int:
    """Check a ResourceRequirements dict; return the GPU limit (0 if none)."""
    unknown = set(resources) - {"requests", "limits"}
    if unknown:
        raise InvalidSpec(f"resources may only have 'requests' and 'limits', got {sorted(unknown)}")
    for section in ("requests", "limits"):
        for res_name, qty in (resources.get(section) or {}).items():
            require_quantity(qty, f"resources.{section}.{res_name}")
    gpu_limit = (resources.get("limits") or {}).get(GPU_RESOURCE)
    gpus = int(gpu_limit) if gpu_limit is not None and gpu_limit.isdigit() else None
    if gpu_limit is not None and gpus is None:
        raise InvalidSpec(f"resources.limits.{GPU_RESOURCE} must be a whole number, got {gpu_limit!r}")
    if runtime == "huggingface-vllm" and not (gpus and 1 <= gpus <= MAX_GPUS):
        raise InvalidSpec(
            f"the huggingface-vllm runtime needs resources.limits['{GPU_RESOURCE}'] between 1 and {MAX_GPUS}, "
            f"got {gpu_limit!r}"
        )
    if runtime == "medgo-cpu" and gpus:
        raise InvalidSpec("the medgo-cpu runtime is CPU-only; use runtime='huggingface-vllm' for GPUs")
    return gpus or 0


DEPLOYMENT_MODE_ANNOTATION = "serving.kserve.io/deploymentMode"
#: KServe's names for its modes, old and new, onto the two medgo rolls out to (ModelMesh stays itself).
_MODES = {
    "Serverless": "Serverless",
    "Knative": "Serverless",
    "RawDeployment": "Standard",
    "Standard": "Standard",
    "ModelMesh": "ModelMesh",
}
#: Predictor fields that belong to autoscaling, which KServe forbids on a Standard-mode canary.
_AUTOSCALING_FIELDS = ("maxReplicas", "scaleMetric", "scaleTarget", "containerConcurrency", "autoScaling")
#: HPA target (CPU utilisation, %) in Standard mode, where Knative's concurrency autoscaler does not run.
STANDARD_CPU_TARGET = 80


def deployment_mode(isvc: Mapping[str, Any]) -> str | None:
    """The mode an existing InferenceService runs in: its annotation, else the mode KServe reports."""
    annotations = (isvc.get("metadata") or {}).get("annotations") or {}
    value = annotations.get(DEPLOYMENT_MODE_ANNOTATION) or (isvc.get("status") or {}).get("deploymentMode")
    return _MODES.get(value, value) if value else None


def serving_args(
    runtime: ServingRuntime,
    *,
    gpus: int = 0,
    lora_model_name: str | None = None,
    max_lora_rank: int = 64,
    max_batch_size: int | None = None,
    max_queue: int | None = None,
) -> list[str]:
    """The model server's arguments for ``runtime`` (KServe appends them to the runtime's own).

    medgo-cpu: the batch and queue bounds (the same numbers that size ``containerConcurrency``);
    huggingface-vllm: the vLLM backend, tensor parallelism, the adapter module and vLLM's batch bound.
    ``max_queue=None`` leaves the server's queue option out (a server without one).
    """
    if runtime == "medgo-cpu":
        args = [f"--max_batch_size={max_batch_size}"] if max_batch_size else []
        return args + ([f"--max_queue={max_queue}"] if max_queue is not None else [])
    args = ["--backend=vllm"]
    if gpus > 1:
        args.append(f"--tensor-parallel-size={gpus}")
    if lora_model_name:
        args += [
            f"--model_dir={BASE_MODEL_DIR}",
            "--enable-lora",
            f"--max-lora-rank={max_lora_rank}",
            f"--lora-modules={lora_model_name}={ADAPTER_DIR}",
        ]
    if max_batch_size:
        args.append(f"--max-num-seqs={max_batch_size}")
    return args


def autoscaling(mode: str, *, max_batch_size: int | None, max_queue: int | None) -> dict[str, Any]:
    """Predictor autoscaling fields matched to the server's bounds (see the module doc)."""
    if mode == "Standard":
        return {"scaleMetric": "cpu", "scaleTarget": STANDARD_CPU_TARGET}
    if not max_batch_size:
        return {}
    return {
        "containerConcurrency": max_batch_size + (max_queue or 0),
        "scaleMetric": "concurrency",
        "scaleTarget": max_batch_size,
    }


def build_inference_service(
    *,
    name: str,
    namespace: str,
    storage_uri: str,
    runtime: ServingRuntime,
    service_account: str = SERVING_SERVICE_ACCOUNT,
    canary_traffic_percent: int | None = None,
    min_replicas: int = 1,
    max_replicas: int = 1,
    resources: dict[str, dict[str, str]] | None = None,
    node_selector: dict[str, str] | None = None,
    tolerations: list[dict[str, Any]] | None = None,
    lora_adapter_uri: str | None = None,
    lora_model_name: str | None = None,
    max_lora_rank: int = 64,
    priority_class: str | None = None,
    labels: dict[str, str] | None = None,
    deployment_mode: str | None = None,
    max_batch_size: int | None = None,
    max_queue: int | None = None,
) -> dict[str, Any]:
    """An InferenceService serving the model at ``storage_uri`` with ``runtime``: the complete spec.

    ``service_account`` names the ServiceAccount whose Secret gives KServe's storage initializer the S3
    credentials (``medgo-serving`` -> Secret ``medgo-s3``). ``canary_traffic_percent`` (0-100) routes that
    share of traffic to this new revision (Serverless mode); ``None`` rolls it out to all traffic. On
    ``huggingface-vllm``, ``resources`` must limit 1-8 GPUs (more than one turns on vLLM tensor parallelism
    across them) and ``lora_adapter_uri`` serves an adapter next to the base model under
    ``lora_model_name`` (``max_lora_rank`` must be at least the adapter's rank). ``deployment_mode``
    (Serverless or Standard) is written as KServe's annotation and picks the autoscaler;
    ``max_batch_size``/``max_queue`` are the server's bounds, passed to it and used for autoscaling.
    Raises :class:`~medgo.errors.InvalidSpec` naming the bad parameter.
    """
    if runtime not in DEFAULT_RESOURCES:
        raise InvalidSpec(f"runtime must be one of {sorted(DEFAULT_RESOURCES)}, got {runtime!r}")
    if deployment_mode is not None and deployment_mode not in ("Serverless", "Standard"):
        raise InvalidSpec(f"deployment_mode must be Serverless or Standard, got {deployment_mode!r}")
    for field, value in (("max_batch_size", max_batch_size), ("max_queue", max_queue)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise InvalidSpec(f"{field} must be an int >= 0 or None, got {value!r}")
    require_dns1035_label(name, "InferenceService name", max_len=_MAX_NAME_LEN)
    require_dns1123_label(namespace, "namespace")
    require_dns1123_label(service_account, "service_account")
    for field, uri in (("storage_uri", storage_uri), ("lora_adapter_uri", lora_adapter_uri)):
        if uri is not None and (not isinstance(uri, str) or not uri.startswith(_STORAGE_SCHEMES)):
            raise InvalidSpec(f"{field} {uri!r} must be a URI KServe can download, e.g. s3://bucket/path")
    if canary_traffic_percent is not None and (
        isinstance(canary_traffic_percent, bool)
        or not isinstance(canary_traffic_percent, int)
        or not 0 <= canary_traffic_percent <= 100
    ):
        raise InvalidSpec(
            f"canary_traffic_percent must be an int from 0 to 100 or None, got {canary_traffic_percent!r}"
        )
    for field, value in (("min_replicas", min_replicas), ("max_replicas", max_replicas)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise InvalidSpec(f"{field} must be an int >= 0, got {value!r}")
    if max_replicas < max(min_replicas, 1):
        raise InvalidSpec(
            f"max_replicas ({max_replicas}) must be >= max(min_replicas, 1) (min_replicas={min_replicas})"
        )
    if lora_adapter_uri is not None and runtime != "huggingface-vllm":
        raise InvalidSpec(
            "lora_adapter_uri needs runtime='huggingface-vllm'; for medgo-cpu export the adapter merged "
            "into the model and pass the merged model as storage_uri"
        )
    if lora_adapter_uri is not None and (
        isinstance(max_lora_rank, bool) or not isinstance(max_lora_rank, int) or max_lora_rank < 1
    ):
        raise InvalidSpec(f"max_lora_rank must be a positive int, got {max_lora_rank!r}")
    if lora_adapter_uri is not None:
        lora_model_name = lora_model_name or f"{name}-lora"
        require_dns1123_label(lora_model_name, "lora_model_name")
    if priority_class is not None:
        require_dns1123_label(priority_class, "priority_class")
    labels = dict(labels or {})
    require_labels(labels)
    require_labels(node_selector or {})
    if not all(isinstance(t, dict) for t in tolerations or []):
        raise InvalidSpec(f"tolerations must be a list of toleration dicts, got {tolerations!r}")
    resources = (
        copy.deepcopy(resources) if resources is not None else copy.deepcopy(DEFAULT_RESOURCES[runtime])
    )
    gpus = _validate_resources(resources, runtime)

    model: dict[str, Any] = {}
    predictor: dict[str, Any] = {}
    if runtime == "medgo-cpu":
        model["modelFormat"] = {"name": CPU_MODEL_FORMAT}
        model["runtime"] = CPU_SERVING_RUNTIME
        model["storageUri"] = storage_uri
    else:
        model["modelFormat"] = {"name": HF_MODEL_FORMAT}
        model["runtime"] = HF_RUNTIME
        if lora_adapter_uri is None:
            model["storageUri"] = storage_uri
        else:
            predictor["storageUris"] = [
                {"uri": storage_uri, "mountPath": BASE_MODEL_DIR},
                {"uri": lora_adapter_uri, "mountPath": ADAPTER_DIR},
            ]
    args = serving_args(
        runtime,
        gpus=gpus,
        lora_model_name=lora_model_name if lora_adapter_uri else None,
        max_lora_rank=max_lora_rank,
        max_batch_size=max_batch_size,
        max_queue=max_queue,
    )
    if args:
        model["args"] = args
    model["resources"] = resources
    model["securityContext"] = {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "runAsNonRoot": True,
        "capabilities": {"drop": ["ALL"]},
    }

    predictor.update(
        {
            "serviceAccountName": service_account,
            "minReplicas": min_replicas,
            "maxReplicas": max_replicas,
            "securityContext": {"runAsNonRoot": True, "seccompProfile": {"type": "RuntimeDefault"}},
            "model": model,
            **autoscaling(
                deployment_mode or "Serverless", max_batch_size=max_batch_size, max_queue=max_queue
            ),
        }
    )
    if canary_traffic_percent is not None:
        predictor["canaryTrafficPercent"] = canary_traffic_percent
    if priority_class:
        predictor["priorityClassName"] = priority_class
    if node_selector:
        predictor["nodeSelector"] = dict(node_selector)
    if tolerations:
        predictor["tolerations"] = copy.deepcopy(list(tolerations))

    metadata: dict[str, Any] = {
        "name": name,
        "namespace": namespace,
        "labels": {
            "app.kubernetes.io/name": "medgo",
            "app.kubernetes.io/component": "serving",
            **PART_OF_LABELS,
            **labels,
        },
    }
    annotations = {DEPLOYMENT_MODE_ANNOTATION: deployment_mode} if deployment_mode else {}
    if canary_traffic_percent is not None:
        # Tag routing gives the new revision its own URL, so a smoke test can reach the canary itself.
        annotations[TAG_ROUTING_ANNOTATION] = "true"
    if annotations:
        metadata["annotations"] = annotations
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": metadata,
        "spec": {"predictor": predictor},
    }


TAG_ROUTING_ANNOTATION = "serving.kserve.io/enable-tag-routing"


def canary_name(predictor: Mapping[str, Any]) -> str:
    """A Standard-mode canary name derived from the predictor it runs: the same model gets the same name."""
    spec = {k: v for k, v in predictor.items() if k != "name"}
    digest = hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:8]
    return f"c{digest}"


def standard_canary(predictor: Mapping[str, Any], name: str, traffic_percent: int) -> dict[str, Any]:
    """A ``spec.canary`` entry running ``predictor`` as canary ``name`` with ``traffic_percent`` of traffic.

    KServe forbids autoscaling fields on a canary and derives its replicas from the traffic share
    unless ``minReplicas`` is set: it is, to at least 1, so a 0 % canary still runs for its smoke test.
    """
    canary = {
        k: copy.deepcopy(v)
        for k, v in predictor.items()
        if k not in (*_AUTOSCALING_FIELDS, "canaryTrafficPercent")
    }
    canary["name"] = name
    canary["minReplicas"] = max(1, int(predictor.get("minReplicas") or 0))
    canary["model"].setdefault("name", "kserve-container")  # the canary's schema requires the container name
    return {"trafficPercent": traffic_percent, "predictor": canary}


def standard_canary_url(isvc_name: str, canary: str, namespace: str) -> str:
    """The in-cluster URL of a Standard-mode canary's own Service (``<isvc>-<canary>-predictor``)."""
    return f"http://{isvc_name}-{canary}-predictor.{namespace}.svc.cluster.local"


class InferenceServiceDeployer:
    """Create or update InferenceServices and drive canary promotion and rollback.

    Needs the ``medgo-pipeline`` Role: inferenceservices create/get/patch (a dry-run patch is a patch).
    """

    def __init__(self, api: client.CustomObjectsApi, *, poller: Poller | None = None):
        self.api = api
        self.poller = poller or Poller()

    def get(self, name: str, namespace: str) -> dict | None:
        """The InferenceService, or ``None`` if it does not exist."""
        try:
            return self.api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except client.exceptions.ApiException as exc:
            if is_not_found(exc):
                return None
            raise

    def apply(self, isvc: Mapping[str, Any], *, exists: bool = False) -> dict:
        """Create ``isvc``, or merge-patch the existing one so that its spec becomes ``isvc``'s spec.

        The desired spec is authoritative: fields of the stored spec that it does not set are removed (KServe's
        defaulting webhook puts its defaults back). Labels and annotations are merged, never removed.
        ``exists=True`` skips the create attempt for a service known to exist. Returns the object as
        stored by the API server.
        """
        body = copy.deepcopy(dict(isvc))
        name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
        if not exists:
            try:
                created = self.api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
                log.info("created InferenceService", extra=fields(isvc=name, namespace=namespace))
                return created
            except client.exceptions.ApiException as exc:
                if not is_conflict(exc):
                    raise
        existing = self.api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        patch = _patch_to(existing, body)
        if not patch:
            log.info("InferenceService unchanged", extra=fields(isvc=name, namespace=namespace))
            return existing
        patched = self.api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)
        log.info(
            "patched InferenceService",
            extra=fields(isvc=name, namespace=namespace, fields_changed=sorted(patch.get("spec") or {})),
        )
        return patched

    def accepts_canary(self, isvc: Mapping[str, Any]) -> bool:
        """Whether the cluster's InferenceService schema keeps ``spec.canary`` (KServe >= 0.20).

        A server-side dry run of the patch that would apply ``isvc``: an API server whose CRD predates
        the field prunes it from the answer, and nothing is written either way.
        """
        name, namespace = isvc["metadata"]["name"], isvc["metadata"]["namespace"]
        existing = self.api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        patch = _patch_to(existing, isvc) or {"spec": {"canary": isvc["spec"].get("canary")}}
        answer = self.api.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURAL, name, patch, dry_run="All"
        )
        return bool((answer.get("spec") or {}).get("canary"))

    def wait_until(
        self,
        name: str,
        namespace: str,
        check: Callable[[Mapping[str, Any]], tuple[bool, str]],
        *,
        timeout_s: float,
        poll_s: float = 10.0,
        what: str = "ready",
    ) -> dict:
        """Poll until ``check(isvc)`` holds; return the object. Raises ``TimeoutError`` with the last reason."""
        deadline = self.poller.clock() + timeout_s
        last_reason = "no status yet"
        while True:
            try:
                isvc = self.api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
            except client.exceptions.ApiException as exc:
                if not is_transient(exc):
                    raise
                isvc = None
            if isvc is not None:
                done, last_reason = check(isvc)
                if done:
                    log.info(f"InferenceService {what}", extra=fields(isvc=name, url=_url(isvc)))
                    return isvc
            remaining = deadline - self.poller.clock()
            if remaining <= 0:
                raise TimeoutError(
                    f"InferenceService {namespace}/{name} not {what} within {timeout_s:g}s: {last_reason}"
                )
            self.poller.sleep(min(poll_s, remaining))

    def wait_ready(self, name: str, namespace: str, timeout_s: float = 1800, poll_s: float = 10.0) -> dict:
        """Poll until the InferenceService reports ``Ready`` for its current spec; return it.

        "Current" means the controller has observed the latest generation (a Ready left over from before
        the last patch does not count) and, in serverless mode, the newest predictor revision is the
        ready one (so a canary that never became ready is not mistaken for success). Raises
        ``TimeoutError`` with the last Ready reason and message after ``timeout_s``.
        """
        return self.wait_until(name, namespace, _readiness, timeout_s=timeout_s, poll_s=poll_s)

    def promote(self, name: str, namespace: str) -> dict:
        """Serverless: send all traffic to the latest revision by removing ``canaryTrafficPercent``."""
        log.info("promoting canary", extra=fields(isvc=name, namespace=namespace))
        return self._patch_canary(name, namespace, None)

    def rollback(self, name: str, namespace: str) -> dict:
        """Serverless: send all traffic back to the previously rolled-out revision (``canaryTrafficPercent: 0``)."""
        log.info("rolling back canary", extra=fields(isvc=name, namespace=namespace))
        return self._patch_canary(name, namespace, 0)

    def _patch_canary(self, name: str, namespace: str, percent: int | None) -> dict:
        body = {"spec": {"predictor": {"canaryTrafficPercent": percent}}}
        return self.api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, body)


def _patch_to(existing: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch that makes ``existing``'s spec ``desired``'s and adds its labels and annotations."""
    patch: dict[str, Any] = {}
    spec_patch = merge_patch_to(existing.get("spec") or {}, desired.get("spec") or {})
    if spec_patch:
        patch["spec"] = spec_patch
    meta_patch = {
        key: {
            k: v
            for k, v in desired["metadata"][key].items()
            if (existing["metadata"].get(key) or {}).get(k) != v
        }
        for key in ("labels", "annotations")
        if desired["metadata"].get(key)
    }
    meta_patch = {k: v for k, v in meta_patch.items() if v}
    if meta_patch:
        patch["metadata"] = meta_patch
    return patch


def _readiness(isvc: Mapping[str, Any]) -> tuple[bool, str]:
    """Whether ``isvc`` is ready for its current spec, and a reason when it is not."""
    status = isvc.get("status") or {}
    generation = (isvc.get("metadata") or {}).get("generation")
    observed = status.get("observedGeneration")
    if generation is not None and observed is not None and observed < generation:
        return False, f"controller has not observed generation {generation} yet (observed {observed})"
    ready = condition(isvc, "Ready")
    if not ready or ready.get("status") != "True":
        if not ready:
            return False, "no Ready condition yet"
        return (
            False,
            f"Ready={ready.get('status')}: {ready.get('reason', '')} {ready.get('message', '')}".strip(),
        )
    predictor = (status.get("components") or {}).get("predictor") or {}
    created, latest_ready = predictor.get("latestCreatedRevision"), predictor.get("latestReadyRevision")
    if created and latest_ready and created != latest_ready:
        return False, f"latest revision {created} is not ready (ready: {latest_ready})"
    return True, "Ready"


def canary_readiness(name: str) -> Callable[[Mapping[str, Any]], tuple[bool, str]]:
    """A check for :meth:`InferenceServiceDeployer.wait_until`: Standard-mode canary ``name`` is ready."""

    def check(isvc: Mapping[str, Any]) -> tuple[bool, str]:
        observed, reason = _observed(isvc)
        if not observed:
            return False, reason
        for status in (isvc.get("status") or {}).get("canaryStatuses") or []:
            if status.get("name") == name:
                return (True, "canary ready") if status.get("ready") else (False, f"canary {name} not ready")
        return False, f"no status for canary {name} yet"

    return check


def promoted(isvc: Mapping[str, Any]) -> tuple[bool, str]:
    """A check: the latest predictor serves all traffic (Serverless: its revision is rolled out at 100 %;
    Standard: no canary is left and the stable predictor is ready)."""
    ready, reason = _readiness(isvc)
    if not ready:
        return False, reason
    status = isvc.get("status") or {}
    if deployment_mode(isvc) == "Standard":
        if (isvc.get("spec") or {}).get("canary") or status.get("canaryStatuses"):
            return False, "a canary is still running"
        return True, "promoted"
    predictor = (status.get("components") or {}).get("predictor") or {}
    latest = predictor.get("latestReadyRevision")
    if predictor.get("latestRolledoutRevision") != latest:
        return False, f"revision {latest} is not rolled out yet"
    share = sum(t.get("percent") or 0 for t in predictor.get("traffic") or [] if t.get("latestRevision"))
    if share != 100:
        return False, f"revision {latest} has {share} % of traffic"
    return True, "promoted"


def _observed(isvc: Mapping[str, Any]) -> tuple[bool, str]:
    generation = (isvc.get("metadata") or {}).get("generation")
    observed = (isvc.get("status") or {}).get("observedGeneration")
    if generation is not None and (observed is None or observed < generation):
        return False, f"controller has not observed generation {generation} yet (observed {observed})"
    return True, ""


def service_url(isvc: Mapping[str, Any]) -> str | None:
    """The in-cluster address of the whole service (all traffic), else its external URL."""
    address = ((isvc.get("status") or {}).get("address") or {}).get("url")
    return address or _url(isvc)


def _url(isvc: Mapping[str, Any]) -> str | None:
    return (isvc.get("status") or {}).get("url")


def canary_url(isvc: Mapping[str, Any]) -> str | None:
    """A URL that reaches the newest revision from inside the cluster.

    With tag routing, the ``latest`` traffic target's URL (Knative names it
    ``latest-<route>.<namespace>.<domain>``); its cluster-local form
    ``http://latest-<route>.<namespace>.svc.cluster.local`` resolves from a pipeline pod even when the
    external domain does not. Without a tag, the service's own address.
    """
    namespace = (isvc.get("metadata") or {}).get("namespace")
    predictor = ((isvc.get("status") or {}).get("components") or {}).get("predictor") or {}
    for target in predictor.get("traffic") or []:
        if target.get("tag") == "latest" and target.get("url"):
            return cluster_local(target["url"], namespace)
    address = ((isvc.get("status") or {}).get("address") or {}).get("url")
    return address or _url(isvc)


def cluster_local(url: str, namespace: str | None) -> str:
    """``http://x.<namespace>.<domain>`` → ``http://x.<namespace>.svc.cluster.local``; other URLs unchanged."""
    parts = urlsplit(url)
    labels = (parts.hostname or "").split(".")
    if (
        namespace
        and len(labels) > 2
        and labels[1] == namespace
        and not parts.hostname.endswith(".svc.cluster.local")
    ):
        return f"http://{labels[0]}.{namespace}.svc.cluster.local{parts.path}".rstrip("/")
    return url


def rolled_out_revision(isvc: Mapping[str, Any]) -> str | None:
    """The revision that served all traffic before this rollout (None on a first rollout)."""
    predictor = ((isvc.get("status") or {}).get("components") or {}).get("predictor") or {}
    return predictor.get("latestRolledoutRevision")
