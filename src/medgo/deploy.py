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

    with serve_locally(model_path) as base_url:
        answer = ask(base_url, config.smoke_question, model=config.name)
    return {"endpoint": f"{base_url}/openai/v1/chat/completions", "answer": answer, "decision": "served-locally"}


def _deploy_kserve(model_uri: str, config: DeployConfig) -> dict:
    from kubernetes import client
    from kubernetes import config as kube_config

    from medgo.k8s.inference_service import InferenceServiceDeployer, build_inference_service
    from medgo.serve.local import ask

    kube_config.load_incluster_config()
    deployer = InferenceServiceDeployer(client.CustomObjectsApi())
    isvc = build_inference_service(name=config.name, namespace=config.namespace,
                                   storage_uri=kserve_storage_uri(model_uri), runtime=config.runtime,
                                   canary_traffic_percent=config.canary_traffic_percent or None)
    deployer.apply(isvc)
    status = deployer.wait_ready(config.name, config.namespace, timeout_s=config.ready_timeout_s)
    url = (status.get("status") or {}).get("url")
    if not url:
        deployer.rollback(config.name, config.namespace)
        raise MedgoError(f"InferenceService {config.namespace}/{config.name} is Ready but reports no URL; rolled back")
    try:
        answer = ask(url, config.smoke_question, model=config.name)
    except Exception as exc:  # any smoke failure means the canary must not take traffic
        deployer.rollback(config.name, config.namespace)
        log.error("canary smoke test failed; rolled back", extra=fields(name=config.name, error=str(exc)))
        raise MedgoError(f"canary smoke test failed ({exc}); rolled back {config.namespace}/{config.name}") from None
    deployer.promote(config.name, config.namespace)
    return {"endpoint": f"{url}/openai/v1/chat/completions", "answer": answer, "decision": "promoted"}


def deploy_model(*, model_path: str, model_uri: str, config: DeployConfig, record_dir: str | Path) -> dict:
    """Deploy and smoke-test; returns and records ``{"endpoint", "answer", "decision", …}``."""
    start = time.monotonic()
    if config.target == "local":
        record = _deploy_local(model_path, config)
    else:
        record = _deploy_kserve(model_uri, config)
    record.update(target=config.target, name=config.name, namespace=config.namespace, model_uri=model_uri,
                  seconds=round(time.monotonic() - start, 2))
    record_dir = Path(record_dir)
    record_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_json(record_dir / "deployment.json", record)
    write_manifest(record_dir, stage="deploy", counts={"deployed": 1}, config=config, inputs={"model": model_path})
    log.info("deployed", extra=fields(target=config.target, endpoint=record["endpoint"], decision=record["decision"]))
    return record
