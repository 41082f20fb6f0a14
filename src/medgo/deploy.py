"""Deployment stage: put a gated candidate behind an endpoint, smoke-test what it serves, keep or undo it.

* ``local``: a KServe ``ModelServer`` subprocess on 127.0.0.1 serving the model, smoke-tested over the
  OpenAI-compatible chat route (:mod:`medgo.smoke`), then stopped (a pipeline step cannot leave a
  server behind; ``medgo serve`` runs one for as long as you like).
* ``kserve``: build the complete InferenceService for the runtime (never a patch onto what the service
  held), check that the service's deployment mode supports the canary asked for, roll the new
  predictor out as a canary (Serverless: ``canaryTrafficPercent``; Standard: ``spec.canary``), wait
  for it, smoke-test the model name it serves, then promote it and wait until it has all traffic, or
  roll it back.

The outcome is recorded as ``deployment.json`` next to a manifest, ``decision`` one of:

* ``deployed`` -- a first rollout (nothing to share traffic with) that passed its smoke test;
* ``promoted`` -- the canary passed and now serves all traffic (also for a canary of 0 %: the new
  revision got no traffic until it passed);
* ``rolled-back`` -- the canary failed (not ready, or a bad answer); all traffic is on the previous
  model and the record says why. The pipeline turns this into a failed run after recording it.
* ``served-locally`` -- the local target's server passed its smoke test.

A first rollout that fails raises (there is nothing to roll back to); so does a promotion that is
not observed in time. Nothing is ever reported as deployed that does not serve all traffic.
"""

from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Any

from medgo.config import DeployConfig, ServeConfig, adapter_model_name
from medgo.errors import InvalidSpec, MedgoError
from medgo.k8s.names import GPU_NODE_LABEL, GPU_RESOURCE, GPU_TOLERATION
from medgo.logs import fields
from medgo.smoke import SmokeCheck, SmokeResult, smoke_test
from medgo.storage import atomic_write_json, write_manifest

log = logging.getLogger(__name__)

#: Decisions a deployment record can carry.
DEPLOYED, PROMOTED, ROLLED_BACK, SERVED_LOCALLY = "deployed", "promoted", "rolled-back", "served-locally"
#: Standard-mode canary Services are named ``<isvc>-<canary>-predictor``: 63 characters at most.
_STANDARD_MAX_NAME_LEN = 63 - len("-c00000000-predictor")


def kserve_storage_uri(uri: str) -> str:
    """KServe's storage initializer speaks ``s3://``; KFP's MinIO store names artifacts ``minio://``."""
    return "s3://" + uri.split("://", 1)[1] if uri.startswith("minio://") else uri


def model_location(model_path: str | Path, model_uri: str) -> tuple[str, str | None]:
    """``(base model URI, adapter URI or None)`` of a trained model directory."""
    from medgo.modeling.loading import adapter_base_model, is_adapter_dir

    if is_adapter_dir(model_path):
        return adapter_base_model(Path(model_path)), model_uri
    return model_uri, None


def serving_limits(config: DeployConfig) -> tuple[int, int]:
    """``(max_batch_size, max_queue)`` the server runs with: the deploy config's, else ServeConfig's.

    Read from :class:`~medgo.config.ServeConfig` so the server's arguments and the autoscaler's
    ``containerConcurrency`` always come from the same numbers.
    """
    serve = ServeConfig.model_fields
    batch = config.max_batch_size or serve["max_batch_size"].default
    queue = config.max_queue if config.max_queue is not None else serve["max_queue"].default
    return batch, queue


def desired_service(model_path: str, model_uri: str, config: DeployConfig) -> tuple[dict[str, Any], str]:
    """The complete InferenceService for the candidate, and the model name its predictor serves."""
    from medgo.k8s.inference_service import DEFAULT_RESOURCES, build_inference_service

    resources = copy.deepcopy(DEFAULT_RESOURCES[config.runtime])
    for section in ("requests", "limits"):
        if config.cpu:
            resources[section]["cpu"] = config.cpu
        if config.memory:
            resources[section]["memory"] = config.memory
    node_selector = dict(config.node_selector)
    tolerations: list[dict[str, Any]] = []
    if config.runtime == "medgo-cpu":  # medgo's server resolves an adapter's base model itself
        storage_uri, adapter_uri, served = kserve_storage_uri(model_uri), None, config.name
    else:  # vLLM mounts base and adapter side by side and serves the adapter under its own name
        base, adapter = model_location(model_path, model_uri)
        storage_uri, adapter_uri = kserve_storage_uri(base), adapter and kserve_storage_uri(adapter)
        served = adapter_model_name(config.name) if adapter_uri else config.name
        for section in ("requests", "limits"):
            resources[section][GPU_RESOURCE] = str(config.gpus)
        if config.gpu_product:
            node_selector[GPU_NODE_LABEL] = config.gpu_product
        tolerations.append(dict(GPU_TOLERATION))
    if config.deployment_mode == "Standard" and len(config.name) > _STANDARD_MAX_NAME_LEN:
        raise InvalidSpec(
            f"InferenceService name {config.name!r}: Standard-mode canaries need a name of at most "
            f"{_STANDARD_MAX_NAME_LEN} characters"
        )
    max_batch_size, max_queue = serving_limits(config)
    isvc = build_inference_service(
        name=config.name,
        namespace=config.namespace,
        storage_uri=storage_uri,
        runtime=config.runtime,
        service_account=config.service_account,
        min_replicas=config.min_replicas,
        max_replicas=config.max_replicas,
        resources=resources,
        node_selector=node_selector,
        tolerations=tolerations,
        lora_adapter_uri=adapter_uri,
        lora_model_name=adapter_model_name(config.name) if adapter_uri else None,
        max_lora_rank=config.max_lora_rank,
        priority_class=config.priority_class,
        deployment_mode=config.deployment_mode,
        max_batch_size=max_batch_size,
        max_queue=max_queue,
    )
    return isvc, served


def check_rollout_mode(existing: dict | None, config: DeployConfig) -> str:
    """The deployment mode to roll out in; raises :class:`MedgoError` before anything is written when the
    service's mode cannot carry the rollout asked for.

    The mode is read from the InferenceService itself (its ``serving.kserve.io/deploymentMode``
    annotation, else the mode KServe reports in its status), so the pipeline needs no access to
    KServe's own namespace. KServe cannot switch an existing service's mode.
    """
    from medgo.k8s.inference_service import deployment_mode

    where = f"{config.namespace}/{config.name}"
    if existing is None:
        return config.deployment_mode
    actual = deployment_mode(existing)
    if actual is None:
        raise MedgoError(
            f"cannot tell the deployment mode of {where}: it has neither the serving.kserve.io/deploymentMode "
            "annotation nor status.deploymentMode; annotate it with its mode (Serverless or Standard)"
        )
    if actual not in ("Serverless", "Standard"):
        raise MedgoError(
            f"{where} runs in {actual} mode, which has no canary rollouts; medgo deploys to Serverless or Standard"
        )
    if actual != config.deployment_mode:
        raise MedgoError(
            f"{where} runs in {actual} mode but deploy_deployment_mode is {config.deployment_mode}; KServe cannot "
            f"switch a service's mode in place: set deploy_deployment_mode={actual}"
        )
    return actual


def _as_desired(isvc: dict) -> dict:
    """An InferenceService as something to apply: its spec and the metadata a client sets, nothing the
    server added (uid, resourceVersion, generation, status)."""
    meta = isvc["metadata"]
    metadata = {
        k: copy.deepcopy(meta[k]) for k in ("name", "namespace", "labels", "annotations") if meta.get(k)
    }
    return {
        "apiVersion": isvc["apiVersion"],
        "kind": isvc["kind"],
        "metadata": metadata,
        "spec": copy.deepcopy(isvc["spec"]),
    }


def _failed_smoke(url: str, model: str, problem: str) -> SmokeResult:
    return SmokeResult(model=model, url=url, checks=[SmokeCheck("ready", problem)])


def _deploy_local(model_path: str, config: DeployConfig) -> dict:
    from medgo.serve.local import serve_locally
    from medgo.serve.paths import chat_completions_path

    with serve_locally(model_path, model_name=config.name) as base_url:
        smoke = smoke_test(base_url, config.name, config)
    if not smoke.passed:
        raise MedgoError(f"the local server failed its smoke test: {smoke.reason()}")
    return {
        "endpoint": base_url + chat_completions_path(),
        "answer": smoke.answer,
        "decision": SERVED_LOCALLY,
        "served_model": config.name,
        "smoke": smoke.as_record(),
    }


class _KServeRollout:
    """One rollout of ``desired`` onto the service (see the module doc); each method returns the record."""

    def __init__(self, deployer, desired: dict, served: str, config: DeployConfig) -> None:
        self.deployer, self.desired, self.served, self.config = deployer, desired, served, config
        self.name, self.namespace = config.name, config.namespace

    def _smoke(self, url: str | None) -> SmokeResult:
        if not url:
            return _failed_smoke("", self.served, "the new revision reports no URL")
        return smoke_test(url, self.served, self.config)

    def _record(self, decision: str, url: str, smoke: SmokeResult, **extra) -> dict:
        from medgo.serve.paths import chat_completions_path

        return {
            "endpoint": url.rstrip("/") + chat_completions_path() if url else "",
            "answer": smoke.answer,
            "decision": decision,
            "served_model": self.served,
            "smoke": smoke.as_record(),
            "canary_traffic_percent": self.config.canary_traffic_percent,
            **extra,
        }

    def _wait_promoted(self) -> dict:
        """The service once the new model serves all traffic; a promotion never observed is an error."""
        from medgo.k8s.inference_service import promoted

        try:
            return self.deployer.wait_until(
                self.name, self.namespace, promoted, timeout_s=self.config.ready_timeout_s, what="promoted"
            )
        except TimeoutError as exc:
            raise MedgoError(
                f"the canary passed its smoke test, but {exc}; it is not reported as deployed"
            ) from None

    def first(self) -> dict:
        from medgo.k8s.inference_service import service_url

        self.deployer.apply(self.desired)
        try:
            ready = self.deployer.wait_ready(self.name, self.namespace, timeout_s=self.config.ready_timeout_s)
            smoke = self._smoke(service_url(ready))
        except TimeoutError as exc:
            smoke = _failed_smoke("", self.served, str(exc))
        if not smoke.passed:
            raise MedgoError(
                f"first rollout of {self.namespace}/{self.name} failed ({smoke.reason()}); there is no previous "
                "revision to roll back to"
            )
        return self._record(DEPLOYED, service_url(ready), smoke, mode=self.config.deployment_mode)

    def serverless(self, existing: dict) -> dict:
        from medgo.k8s.inference_service import (
            TAG_ROUTING_ANNOTATION,
            canary_url,
            rolled_out_revision,
            service_url,
        )

        previous = rolled_out_revision(existing)
        canary = copy.deepcopy(self.desired)
        canary["spec"]["predictor"]["canaryTrafficPercent"] = self.config.canary_traffic_percent
        canary["metadata"].setdefault("annotations", {})[TAG_ROUTING_ANNOTATION] = "true"
        log.info(
            "rolling out canary",
            extra=fields(
                isvc=self.name, canary_percent=self.config.canary_traffic_percent, previous=previous
            ),
        )
        self.deployer.apply(canary, exists=True)
        try:
            ready = self.deployer.wait_ready(self.name, self.namespace, timeout_s=self.config.ready_timeout_s)
            url = canary_url(ready)
            smoke = self._smoke(url)
        except TimeoutError as exc:
            url, smoke = "", _failed_smoke("", self.served, str(exc))
        if not smoke.passed:
            # Traffic stays pinned on the previous revision, and the spec names the model it serves again.
            restore = _as_desired(existing)
            restore["spec"]["predictor"]["canaryTrafficPercent"] = 0
            self.deployer.apply(restore, exists=True)
            log.error("canary failed; rolled back", extra=fields(isvc=self.name, problems=smoke.reason()))
            return self._record(
                ROLLED_BACK,
                url or "",
                smoke,
                previous_revision=previous,
                reason=smoke.reason(),
                mode="Serverless",
            )
        self.deployer.promote(self.name, self.namespace)
        done = self._wait_promoted()
        return self._record(PROMOTED, service_url(done), smoke, previous_revision=previous, mode="Serverless")

    def standard(self, existing: dict) -> dict:
        from medgo.k8s.inference_service import (
            canary_name,
            canary_readiness,
            service_url,
            standard_canary,
            standard_canary_url,
        )

        new_predictor = self.desired["spec"]["predictor"]
        name = canary_name(new_predictor)
        stable = _as_desired(existing)
        stable["spec"].pop("canary", None)
        with_canary = copy.deepcopy(stable)
        with_canary["metadata"]["labels"] = {
            **stable["metadata"].get("labels", {}),
            **self.desired["metadata"]["labels"],
        }
        with_canary["spec"]["canary"] = [
            standard_canary(new_predictor, name, self.config.canary_traffic_percent)
        ]
        if not self.deployer.accepts_canary(with_canary):
            raise MedgoError(
                f"{self.namespace}/{self.name} runs in Standard mode, but this cluster's KServe predates spec.canary "
                "(0.20) and would ignore the canary: upgrade KServe, or roll out in Serverless mode"
            )
        log.info(
            "rolling out canary",
            extra=fields(isvc=self.name, canary=name, canary_percent=self.config.canary_traffic_percent),
        )
        self.deployer.apply(with_canary, exists=True)
        url = standard_canary_url(self.name, name, self.namespace)
        try:
            self.deployer.wait_until(
                self.name,
                self.namespace,
                canary_readiness(name),
                timeout_s=self.config.ready_timeout_s,
                what="canary ready",
            )
            smoke = self._smoke(url)
        except TimeoutError as exc:
            smoke = _failed_smoke(url, self.served, str(exc))
        if not smoke.passed:
            self.deployer.apply(stable, exists=True)
            log.error("canary failed; rolled back", extra=fields(isvc=self.name, problems=smoke.reason()))
            return self._record(ROLLED_BACK, url, smoke, canary=name, reason=smoke.reason(), mode="Standard")
        final = copy.deepcopy(self.desired)
        final["spec"]["predictor"]["name"] = name  # the stable predictor becomes the canary: no restart
        self.deployer.apply(final, exists=True)
        done = self._wait_promoted()
        return self._record(PROMOTED, service_url(done), smoke, canary=name, mode="Standard")


def _deploy_kserve(model_path: str, model_uri: str, config: DeployConfig, deployer=None) -> dict:
    from medgo.k8s.clients import kubernetes_clients
    from medgo.k8s.inference_service import InferenceServiceDeployer, rolled_out_revision

    desired, served = desired_service(model_path, model_uri, config)
    if deployer is None:  # after building the spec: a bad parameter fails before the cluster is contacted
        deployer = InferenceServiceDeployer(kubernetes_clients().custom)
    existing = deployer.get(config.name, config.namespace)
    mode = check_rollout_mode(existing, config)
    rollout = _KServeRollout(deployer, desired, served, config)
    if existing is None or (mode == "Serverless" and not rolled_out_revision(existing)):
        return rollout.first()
    return rollout.serverless(existing) if mode == "Serverless" else rollout.standard(existing)


def deploy_model(
    *, model_path: str, model_uri: str, config: DeployConfig, record_dir: str | Path, deployer=None
) -> dict:
    """Deploy and smoke-test; returns and records ``{"endpoint", "answer", "decision", …}``.

    ``deployer`` (an :class:`~medgo.k8s.inference_service.InferenceServiceDeployer`) defaults to one
    using the pod's in-cluster credentials. A rolled-back canary is returned (and recorded), not raised.
    """
    start = time.monotonic()
    if config.target == "local":
        record = _deploy_local(model_path, config)
    else:
        record = _deploy_kserve(model_path, model_uri, config, deployer)
    record.update(
        target=config.target,
        name=config.name,
        namespace=config.namespace,
        model_uri=model_uri,
        seconds=round(time.monotonic() - start, 2),
    )
    record_dir = Path(record_dir)
    record_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(record_dir / "deployment.json", record)
    serving = record["decision"] != ROLLED_BACK
    write_manifest(
        record_dir,
        stage="deploy",
        counts={"deployed": int(serving), "rolled_back": int(not serving)},
        config=config,
        inputs={"model": model_path},
    )
    log.info(
        "deployment decided",
        extra=fields(target=config.target, endpoint=record["endpoint"], decision=record["decision"]),
    )
    return record


def raise_rolled_back(record_dir: str | Path) -> None:
    """Raise :class:`MedgoError` with the reason when the deployment recorded in ``record_dir`` was rolled back."""
    import json

    record = json.loads((Path(record_dir) / "deployment.json").read_text(encoding="utf-8"))
    if record["decision"] == ROLLED_BACK:
        raise MedgoError(
            f"rollout of {record['namespace']}/{record['name']} was rolled back: {record.get('reason', 'unknown')}; "
            "all traffic stays on the previous model"
        )
