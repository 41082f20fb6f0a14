"""The deploy stage's KServe path: canary → smoke test over HTTP → promote, or roll back.

The Kubernetes API is the in-memory stand-in of conftest.py (no API server can run in this sandbox for
this stage); a ``defaulter`` plays KServe's controller by marking the revision Ready and pointing its
``latest`` traffic tag at a URL. The smoke test itself is real: a KServe ModelServer on 127.0.0.1 serving
the tiny model, asked over the OpenAI-compatible route.
"""

from __future__ import annotations

import socket

import pytest

from medgo.config import DeployConfig
from medgo.deploy import deploy_model, kserve_storage_uri
from medgo.errors import MedgoError
from medgo.k8s._common import Poller
from medgo.k8s.inference_service import GROUP, PLURAL, VERSION, InferenceServiceDeployer

CONFIG = DeployConfig(target="kserve", runtime="medgo-cpu", canary_traffic_percent=10, ready_timeout_s=60)


def kserve_controller(canary_url: str):
    def reconcile(obj: dict) -> None:
        obj["status"] = {
            "observedGeneration": obj["metadata"].get("generation", 1),
            "url": "http://medgo.medgo.example.internal",
            "conditions": [{"type": "Ready", "status": "True"}],
            "components": {"predictor": {"traffic": [
                {"tag": "prev", "percent": 90, "url": "http://prev-medgo.example.internal"},
                {"tag": "latest", "percent": 10, "url": canary_url, "latestRevision": True},
            ]}},
        }
    return reconcile


@pytest.fixture
def deployer(custom_api, fake_clock):
    return InferenceServiceDeployer(custom_api, poller=Poller(fake_clock.clock, fake_clock.sleep))


def stored(server) -> dict:
    return server.get(GROUP, VERSION, "medgo", PLURAL, "medgo")


def test_healthy_canary_is_smoke_tested_then_promoted(server, deployer, sample_model_dir, tmp_path):
    from medgo.serve.local import serve_locally

    with serve_locally(str(sample_model_dir)) as url:
        server.defaulters[PLURAL] = kserve_controller(url)
        record = deploy_model(model_path=str(sample_model_dir), model_uri="minio://mlpipeline/v2/artifacts/dpo/trained",
                              config=CONFIG, record_dir=tmp_path / "record", deployer=deployer)
    assert record["decision"] == "promoted" and isinstance(record["answer"], str)
    assert record["endpoint"] == f"{url}/openai/v1/chat/completions"
    predictor = stored(server)["spec"]["predictor"]
    assert "canaryTrafficPercent" not in predictor  # promoted: all traffic on the new revision
    assert predictor["model"]["storageUri"] == "s3://mlpipeline/v2/artifacts/dpo/trained"
    assert (tmp_path / "record" / "deployment.json").exists()


def test_failing_canary_is_rolled_back(server, deployer, tmp_path):
    with socket.socket() as s:  # a port nothing listens on: the canary never answers
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    server.defaulters[PLURAL] = kserve_controller(dead)
    with pytest.raises(MedgoError, match="canary of medgo/medgo failed .*rolled back"):
        deploy_model(model_path="unused", model_uri="s3://medgo-models/medgo/v3", config=CONFIG,
                     record_dir=tmp_path / "record", deployer=deployer)
    assert stored(server)["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert not (tmp_path / "record" / "deployment.json").exists()


def test_canary_that_never_becomes_ready_is_rolled_back(server, deployer, tmp_path):
    config = CONFIG.model_copy(update={"ready_timeout_s": 30})
    with pytest.raises(MedgoError, match="not ready within 30s"):
        deploy_model(model_path="unused", model_uri="s3://m/v4", config=config, record_dir=tmp_path / "r",
                     deployer=deployer)
    assert stored(server)["spec"]["predictor"]["canaryTrafficPercent"] == 0


def test_kfp_minio_uris_become_s3_for_kserve():
    assert kserve_storage_uri("minio://mlpipeline/v2/x") == "s3://mlpipeline/v2/x"
    assert kserve_storage_uri("s3://a/b") == "s3://a/b" and kserve_storage_uri("pvc://c/d") == "pvc://c/d"
