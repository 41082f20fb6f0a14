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

Canary semantics are KServe's (serverless mode): applying a changed spec with ``canaryTrafficPercent: N``
sends N % of traffic to the new revision and the rest to the last revision that was rolled out at 100 %.
*Promote* removes ``canaryTrafficPercent`` (the new revision takes all traffic); *rollback* sets it to 0
(all traffic back on the previously rolled-out revision, the canary revision is kept idle).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
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
    max_lora_rank: int = 64,
    priority_class: str | None = None,
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    """An InferenceService serving the model at ``storage_uri`` with ``runtime``.

    ``service_account`` names the ServiceAccount whose Secret gives KServe's storage initializer the S3
    credentials (``medgo-serving`` -> Secret ``medgo-s3``). ``canary_traffic_percent`` (0-100) routes that
    share of traffic to this new revision; ``None`` rolls it out to all traffic. On ``huggingface-vllm``,
    ``resources`` must limit 1-8 GPUs (more than one turns on vLLM tensor parallelism across them) and
    ``lora_adapter_uri`` serves an adapter next to the base model (``max_lora_rank`` must be at least the
    adapter's rank). Raises :class:`~medgo.errors.InvalidSpec` naming the bad parameter.
    """
    if runtime not in DEFAULT_RESOURCES:
        raise InvalidSpec(f"runtime must be one of {sorted(DEFAULT_RESOURCES)}, got {runtime!r}")
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
        args = ["--backend=vllm"]
        if gpus > 1:
            args.append(f"--tensor-parallel-size={gpus}")
        if lora_adapter_uri is None:
            model["storageUri"] = storage_uri
        else:
            args += [
                f"--model_dir={BASE_MODEL_DIR}",
                "--enable-lora",
                f"--max-lora-rank={max_lora_rank}",
                f"--lora-modules={name}-lora={ADAPTER_DIR}",
            ]
            predictor["storageUris"] = [
                {"uri": storage_uri, "mountPath": BASE_MODEL_DIR},
                {"uri": lora_adapter_uri, "mountPath": ADAPTER_DIR},
            ]
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
    if canary_traffic_percent is not None:
        # Tag routing gives the new revision its own URL, so a smoke test can reach the canary itself.
        metadata["annotations"] = {TAG_ROUTING_ANNOTATION: "true"}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": KIND,
        "metadata": metadata,
        "spec": {"predictor": predictor},
    }


TAG_ROUTING_ANNOTATION = "serving.kserve.io/enable-tag-routing"


class InferenceServiceDeployer:
    """Create or update InferenceServices and drive canary promotion and rollback.

    Needs the ``medgo-pipeline`` Role: inferenceservices create/get/patch.
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

    def apply(self, isvc: Mapping[str, Any]) -> dict:
        """Create ``isvc``, or merge-patch the existing one so that its spec becomes ``isvc``'s spec.

        The desired spec is authoritative: fields of the stored spec that it does not set are removed (KServe's
        defaulting webhook puts its defaults back). Labels and annotations are merged, never removed.
        Returns the object as stored by the API server.
        """
        body = copy.deepcopy(dict(isvc))
        name, namespace = body["metadata"]["name"], body["metadata"]["namespace"]
        try:
            created = self.api.create_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, body)
            log.info("created InferenceService", extra=fields(isvc=name, namespace=namespace))
            return created
        except client.exceptions.ApiException as exc:
            if not is_conflict(exc):
                raise
        existing = self.api.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        patch: dict[str, Any] = {}
        spec_patch = merge_patch_to(existing.get("spec") or {}, body.get("spec") or {})
        if spec_patch:
            patch["spec"] = spec_patch
        meta_patch = {
            key: {
                k: v
                for k, v in body["metadata"][key].items()
                if (existing["metadata"].get(key) or {}).get(k) != v
            }
            for key in ("labels", "annotations")
            if body["metadata"].get(key)
        }
        meta_patch = {k: v for k, v in meta_patch.items() if v}
        if meta_patch:
            patch["metadata"] = meta_patch
        if not patch:
            log.info("InferenceService unchanged", extra=fields(isvc=name, namespace=namespace))
            return existing
        patched = self.api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, patch)
        log.info(
            "patched InferenceService",
            extra=fields(isvc=name, namespace=namespace, fields_changed=sorted(spec_patch)),
        )
        return patched

    def wait_ready(self, name: str, namespace: str, timeout_s: float = 1800, poll_s: float = 10.0) -> dict:
        """Poll until the InferenceService reports ``Ready`` for its current spec; return it.

        "Current" means the controller has observed the latest generation (a Ready left over from before
        the last patch does not count) and, in serverless mode, the newest predictor revision is the
        ready one (so a canary that never became ready is not mistaken for success). Raises
        ``TimeoutError`` with the last Ready reason and message after ``timeout_s``.
        """
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
                ready, last_reason = _readiness(isvc)
                if ready:
                    log.info("InferenceService ready", extra=fields(isvc=name, url=_url(isvc)))
                    return isvc
            remaining = deadline - self.poller.clock()
            if remaining <= 0:
                raise TimeoutError(
                    f"InferenceService {namespace}/{name} not ready within {timeout_s:g}s: {last_reason}"
                )
            self.poller.sleep(min(poll_s, remaining))

    def roll_out(self, isvc: Mapping[str, Any], canary_traffic_percent: int | None) -> dict:
        """Point an existing InferenceService at ``isvc``'s model and give the new revision a canary share.

        Only the model location (``model.storageUri`` or ``storageUris``) and ``canaryTrafficPercent`` are
        patched: scheduling, resources and runtime arguments stay as the site's manifests set them. Tag
        routing is switched on so the new revision has its own URL for smoke tests.
        """
        name, namespace = isvc["metadata"]["name"], isvc["metadata"]["namespace"]
        predictor = isvc["spec"]["predictor"]
        body = {
            "metadata": {"annotations": {TAG_ROUTING_ANNOTATION: "true"}},
            "spec": {
                "predictor": {
                    "canaryTrafficPercent": canary_traffic_percent,
                    "storageUris": copy.deepcopy(predictor.get("storageUris")),  # None removes it
                    "model": {"storageUri": predictor["model"].get("storageUri")},
                }
            },
        }
        log.info(
            "rolling out new model",
            extra=fields(isvc=name, namespace=namespace, canary_percent=canary_traffic_percent),
        )
        return self.api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, body)

    def promote(self, name: str, namespace: str) -> dict:
        """Send all traffic to the latest revision by removing ``canaryTrafficPercent``."""
        log.info("promoting canary", extra=fields(isvc=name, namespace=namespace))
        return self._patch_canary(name, namespace, None)

    def rollback(self, name: str, namespace: str) -> dict:
        """Send all traffic back to the previously rolled-out revision (``canaryTrafficPercent: 0``)."""
        log.info("rolling back canary", extra=fields(isvc=name, namespace=namespace))
        return self._patch_canary(name, namespace, 0)

    def delete(self, name: str, namespace: str) -> bool:
        """Delete the InferenceService; return False if it did not exist."""
        try:
            self.api.delete_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name)
        except client.exceptions.ApiException as exc:
            if is_not_found(exc):
                return False
            raise
        return True

    def _patch_canary(self, name: str, namespace: str, percent: int | None) -> dict:
        body = {"spec": {"predictor": {"canaryTrafficPercent": percent}}}
        return self.api.patch_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, name, body)


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
