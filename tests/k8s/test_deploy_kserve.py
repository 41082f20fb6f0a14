"""The deploy stage's KServe path: canary → smoke test over HTTP → promote, or roll back.

The Kubernetes API is the in-memory stand-in of conftest.py (no API server can run in this sandbox for
this stage); a ``defaulter`` plays KServe's controller by marking the revision Ready and pointing its
``latest`` traffic tag at a URL. The smoke test itself is real: a KServe ModelServer on 127.0.0.1 serving
the tiny model, asked over the OpenAI-compatible route.
"""

from __future__ import annotations

import json
import socket

import pytest

from medgo.config import DeployConfig
from medgo.deploy import deploy_model, kserve_storage_uri
from medgo.errors import MedgoError
from medgo.k8s._common import Poller
from medgo.k8s.inference_service import (
    GROUP,
    PLURAL,
    VERSION,
    InferenceServiceDeployer,
    build_inference_service,
    canary_url,
    cluster_local,
)

CONFIG = DeployConfig(target="kserve", runtime="medgo-cpu", canary_traffic_percent=10, ready_timeout_s=60)


def kserve_controller(canary_url: str, rolled_out: str | None = "medgo-predictor-00001"):
    """Plays KServe's controller: the newest revision comes up Ready, reachable at ``canary_url``."""

    def reconcile(obj: dict) -> None:
        predictor = {"traffic": [{"tag": "latest", "percent": 10, "url": canary_url, "latestRevision": True}]}
        if rolled_out:
            predictor["latestRolledoutRevision"] = rolled_out
            predictor["traffic"].insert(
                0, {"tag": "prev", "percent": 90, "url": "http://prev-medgo-predictor.medgo.example.com"}
            )
        obj["status"] = {
            "observedGeneration": obj["metadata"].get("generation", 1),
            "url": "http://medgo.medgo.example.com",
            "conditions": [{"type": "Ready", "status": "True"}],
            "components": {"predictor": predictor},
        }

    return reconcile


@pytest.fixture
def deployer(custom_api, fake_clock):
    return InferenceServiceDeployer(custom_api, poller=Poller(fake_clock.clock, fake_clock.sleep))


def stored(server) -> dict:
    return server.get(GROUP, VERSION, "medgo", PLURAL, "medgo")


def site_isvc(deployer) -> None:
    """The InferenceService as the onprem overlay applies it: site scheduling the deploy step must keep."""
    isvc = build_inference_service(
        name="medgo",
        namespace="medgo",
        storage_uri="s3://medgo-models/medgo/v1",
        runtime="medgo-cpu",
        node_selector={"node-pool": "cpu-serving"},
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "serving", "effect": "NoSchedule"}],
        priority_class="medgo-serving",
    )
    deployer.apply(isvc)


def test_healthy_canary_is_smoke_tested_then_promoted_keeping_site_settings(
    server, deployer, sample_model_dir, tmp_path
):
    from medgo.serve.local import serve_locally

    with serve_locally(str(sample_model_dir)) as url:
        server.controllers[PLURAL] = kserve_controller(url)
        site_isvc(deployer)
        record = deploy_model(
            model_path=str(sample_model_dir),
            model_uri="minio://mlpipeline/v2/artifacts/dpo/trained",
            config=CONFIG,
            record_dir=tmp_path / "record",
            deployer=deployer,
        )
    assert record["decision"] == "promoted" and isinstance(record["answer"], str)
    assert record["previous_revision"] == "medgo-predictor-00001"
    assert record["endpoint"] == f"{url}/openai/v1/chat/completions"
    canary_patch = server.calls("PATCH")[0]["body"]
    assert canary_patch["spec"]["predictor"]["canaryTrafficPercent"] == 10
    predictor = stored(server)["spec"]["predictor"]
    assert "canaryTrafficPercent" not in predictor  # promoted: all traffic on the new revision
    assert predictor["model"]["storageUri"] == "s3://mlpipeline/v2/artifacts/dpo/trained"
    assert (
        predictor["nodeSelector"] == {"node-pool": "cpu-serving"}
        and predictor["priorityClassName"] == "medgo-serving"
    )
    assert predictor["tolerations"][0]["key"] == "dedicated"
    assert (tmp_path / "record" / "deployment.json").exists()


def test_failing_canary_is_rolled_back(server, deployer, tmp_path):
    with socket.socket() as s:  # a port nothing listens on: the canary never answers
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    server.controllers[PLURAL] = kserve_controller(dead)
    site_isvc(deployer)
    with pytest.raises(MedgoError, match="canary of medgo/medgo failed .*rolled back.*medgo-predictor-00001"):
        deploy_model(
            model_path="unused",
            model_uri="s3://medgo-models/medgo/v3",
            config=CONFIG,
            record_dir=tmp_path / "record",
            deployer=deployer,
        )
    assert stored(server)["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert not (tmp_path / "record" / "deployment.json").exists()


def test_first_rollout_failure_says_there_is_nothing_to_roll_back_to(server, deployer, tmp_path):
    config = CONFIG.model_copy(update={"ready_timeout_s": 30})
    with pytest.raises(
        MedgoError, match="first rollout of medgo/medgo failed .*not ready within 30s.*no previous"
    ):
        deploy_model(
            model_path="unused",
            model_uri="s3://m/v4",
            config=config,
            record_dir=tmp_path / "r",
            deployer=deployer,
        )
    assert "canaryTrafficPercent" not in stored(server)["spec"]["predictor"]


def test_vllm_runtime_mounts_base_and_adapter(server, deployer, tmp_path):
    adapter = tmp_path / "dpo"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "minio://mlpipeline/v2/pt"})
    )
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}"
    server.controllers[PLURAL] = kserve_controller(dead, rolled_out=None)
    config = CONFIG.model_copy(update={"runtime": "huggingface-vllm"})
    with pytest.raises(MedgoError):
        deploy_model(
            model_path=str(adapter),
            model_uri="minio://mlpipeline/v2/dpo",
            config=config,
            record_dir=tmp_path / "r",
            deployer=deployer,
        )
    uris = [u["uri"] for u in stored(server)["spec"]["predictor"]["storageUris"]]
    assert uris == ["s3://mlpipeline/v2/pt", "s3://mlpipeline/v2/dpo"]


def test_canary_url_is_cluster_local():
    isvc = {
        "metadata": {"namespace": "medgo"},
        "status": {
            "components": {
                "predictor": {
                    "traffic": [
                        {"tag": "latest", "url": "http://latest-medgo-predictor.medgo.hospital.example"}
                    ]
                }
            }
        },
    }
    assert canary_url(isvc) == "http://latest-medgo-predictor.medgo.svc.cluster.local"
    assert cluster_local("http://127.0.0.1:8080", "medgo") == "http://127.0.0.1:8080"


def test_kfp_minio_uris_become_s3_for_kserve():
    assert kserve_storage_uri("minio://mlpipeline/v2/x") == "s3://mlpipeline/v2/x"
    assert kserve_storage_uri("s3://a/b") == "s3://a/b" and kserve_storage_uri("pvc://c/d") == "pvc://c/d"
