"""Deployment stage: put a gated candidate behind an endpoint and smoke-test it.

* ``local``: a KServe ``ModelServer`` subprocess on 127.0.0.1 serving the model, asked one
  question over the OpenAI-compatible chat route, then stopped (a pipeline step cannot leave a
  server behind; ``medgo serve`` runs one for as long as you like).
* ``kserve``: create or patch an ``InferenceService`` with a canary share of traffic, wait for
  Ready, smoke-test the canary, then promote it or roll it back.

Either way the decision is recorded as ``deployment.json`` next to a manifest.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from medgo.config import DeployConfig
from medgo.errors import MedgoError
from medgo.logs import fields
from medgo.storage import atomic_write_json, write_manifest

log = logging.getLogger(__name__)


def kserve_storage_uri(uri: str) -> str:
    """KServe's storage initializer speaks ``s3://``; KFP's MinIO store names artifacts ``minio://``."""
    return "s3://" + uri.split("://", 1)[1] if uri.startswith("minio://") else uri


def _deploy_local(model_path: str, config: DeployConfig) -> dict:
    from medgo.serve.local import ask, serve_locally
    from medgo.serve.streaming import clean_text

    with serve_locally(model_path) as base_url:
        answer = clean_text(ask(base_url, config.smoke_question, model=config.name))
    return {
        "endpoint": f"{base_url}/openai/v1/chat/completions",
        "answer": answer,
        "decision": "served-locally",
    }


def model_location(model_path: str | Path, model_uri: str) -> tuple[str, str | None]:
    """``(base model URI, adapter URI or None)`` of a trained model directory."""
    from medgo.modeling.loading import adapter_base_model, is_adapter_dir

    if is_adapter_dir(model_path):
        return adapter_base_model(Path(model_path)), model_uri
    return model_uri, None


def _deploy_kserve(model_path: str, model_uri: str, config: DeployConfig, deployer=None) -> dict:
    from medgo.k8s.clients import kubernetes_clients
    from medgo.k8s.inference_service import (
        InferenceServiceDeployer,
        build_inference_service,
        canary_url,
        rolled_out_revision,
    )
    from medgo.serve.local import ask

    name, namespace = config.name, config.namespace
    if config.runtime == "medgo-cpu":  # medgo's server resolves an adapter's base model itself
        storage_uri, adapter_uri = kserve_storage_uri(model_uri), None
    else:  # vLLM mounts base and adapter side by side
        base, adapter = model_location(model_path, model_uri)
        storage_uri, adapter_uri = kserve_storage_uri(base), adapter and kserve_storage_uri(adapter)
    desired = build_inference_service(
        name=name,
        namespace=namespace,
        storage_uri=storage_uri,
        runtime=config.runtime,
        lora_adapter_uri=adapter_uri,
    )
    if deployer is None:  # after building the spec: a bad parameter fails before the cluster is contacted
        deployer = InferenceServiceDeployer(kubernetes_clients().custom)
    existing = deployer.get(name, namespace)
    previous = rolled_out_revision(existing) if existing else None
    canary = config.canary_traffic_percent if previous else None  # a first rollout has nothing to share with
    if existing is None:
        deployer.apply(desired)
    else:
        deployer.roll_out(desired, canary)
    try:
        ready = deployer.wait_ready(name, namespace, timeout_s=config.ready_timeout_s)
        url = canary_url(ready)
        if not url:
            raise MedgoError("the InferenceService is Ready but reports no URL")
        answer = ask(url, config.smoke_question, model=name)
    except Exception as exc:  # a revision that is not ready or fails its smoke test must not take traffic
        log.error(
            "new revision failed", extra=fields(isvc=name, namespace=namespace, error=type(exc).__name__)
        )
        if previous:
            deployer.rollback(name, namespace)
            raise MedgoError(
                f"canary of {namespace}/{name} failed ({exc}); rolled back: all traffic stays on "
                f"revision {previous}"
            ) from None
        raise MedgoError(
            f"first rollout of {namespace}/{name} failed ({exc}); there is no previous revision to "
            "roll back to"
        ) from None
    if canary:
        deployer.promote(name, namespace)
    return {
        "endpoint": f"{url}/openai/v1/chat/completions",
        "answer": answer,
        "decision": "promoted" if canary else "deployed",
        "previous_revision": previous,
    }


def deploy_model(
    *, model_path: str, model_uri: str, config: DeployConfig, record_dir: str | Path, deployer=None
) -> dict:
    """Deploy and smoke-test; returns and records ``{"endpoint", "answer", "decision", …}``.

    ``deployer`` (an :class:`~medgo.k8s.inference_service.InferenceServiceDeployer`) defaults to one
    using the pod's in-cluster credentials.
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
    write_manifest(
        record_dir, stage="deploy", counts={"deployed": 1}, config=config, inputs={"model": model_path}
    )
    log.info(
        "deployed",
        extra=fields(target=config.target, endpoint=record["endpoint"], decision=record["decision"]),
    )
    return record
