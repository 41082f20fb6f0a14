"""The deploy stage's KServe path: canary → smoke test over HTTP → promote, or roll back.

Runs against the real API server of tests/k8s/apiserver as the pipeline's ServiceAccount (RBAC checks
every call). No KServe controller runs there: ``KServeControllerSim`` plays it, writing status through the
status subresource as watch events arrive (observedGeneration, Ready, a new revision per model change,
traffic split, the ``latest`` tag's URL). The smoke test itself is real: a KServe ModelServer on 127.0.0.1
serving the tiny model, asked over the OpenAI-compatible route, or a port nothing listens on.
"""

from __future__ import annotations

import json
import socket

import pytest
from kubernetes import client

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
from tests.k8s.apiserver.cluster import wait_until

CONFIG = DeployConfig(target="kserve", runtime="medgo-cpu", canary_traffic_percent=10, ready_timeout_s=60)


@pytest.fixture
def deployer(pipeline_api, change_signal):
    return InferenceServiceDeployer(client.CustomObjectsApi(pipeline_api), poller=change_signal.poller())


def stored(admin_api) -> dict:
    return client.CustomObjectsApi(admin_api).get_namespaced_custom_object(
        GROUP, VERSION, "medgo", PLURAL, "medgo"
    )


def dead_url() -> str:
    with socket.socket() as s:  # a port nothing listens on: the canary never answers
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def site_isvc(admin_api) -> None:
    """The InferenceService as the platform team's ``kubectl apply`` left it, rolled out by KServe: site
    scheduling that the deploy step must keep."""
    isvc = build_inference_service(
        name="medgo",
        namespace="medgo",
        storage_uri="s3://medgo-models/medgo/v1",
        runtime="medgo-cpu",
        node_selector={"node-pool": "cpu-serving"},
        tolerations=[{"key": "dedicated", "operator": "Equal", "value": "serving", "effect": "NoSchedule"}],
        priority_class="medgo-serving",
    )
    client.CustomObjectsApi(admin_api).create_namespaced_custom_object(GROUP, VERSION, "medgo", PLURAL, isvc)
    wait_until(
        lambda: (stored(admin_api).get("status") or {}).get("observedGeneration") == 1,
        timeout_s=10,
        what="first revision rolled out",
    )


def test_healthy_canary_is_smoke_tested_then_promoted_keeping_site_settings(
    kube, deployer, admin_api, kserve_controller, sample_model_dir, tmp_path
):
    from medgo.serve.local import serve_locally

    with serve_locally(str(sample_model_dir)) as url:
        kserve_controller(url)
        site_isvc(admin_api)
        mark = kube.audit_offset()
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
    patches = [e["requestObject"] for e in kube.audit_events(mark) if e["verb"] == "patch"]
    assert (
        patches[0]["spec"]["predictor"]["canaryTrafficPercent"] == 10
    )  # the rollout, as the server received it
    assert patches[-1] == {"spec": {"predictor": {"canaryTrafficPercent": None}}}  # the promotion
    predictor = stored(admin_api)["spec"]["predictor"]
    assert "canaryTrafficPercent" not in predictor  # promoted: all traffic on the new revision
    assert predictor["model"]["storageUri"] == "s3://mlpipeline/v2/artifacts/dpo/trained"
    assert (
        predictor["nodeSelector"] == {"node-pool": "cpu-serving"}
        and predictor["priorityClassName"] == "medgo-serving"
    )
    assert predictor["tolerations"][0]["key"] == "dedicated"
    assert (tmp_path / "record" / "deployment.json").exists()


def test_failing_canary_is_rolled_back(deployer, admin_api, kserve_controller, tmp_path):
    kserve_controller(dead_url())
    site_isvc(admin_api)
    with pytest.raises(MedgoError, match="canary of medgo/medgo failed .*rolled back.*medgo-predictor-00001"):
        deploy_model(
            model_path="unused",
            model_uri="s3://medgo-models/medgo/v3",
            config=CONFIG,
            record_dir=tmp_path / "record",
            deployer=deployer,
        )
    assert stored(admin_api)["spec"]["predictor"]["canaryTrafficPercent"] == 0
    # KServe moves all traffic back to the revision rolled out before (the simulated controller as KServe would).
    wait_until(
        lambda: (
            stored(admin_api)["status"]["observedGeneration"] == stored(admin_api)["metadata"]["generation"]
        ),
        timeout_s=10,
        what="rollback observed",
    )
    traffic = stored(admin_api)["status"]["components"]["predictor"]["traffic"]
    assert {t["revisionName"]: t["percent"] for t in traffic} == {
        "medgo-predictor-00002": 0,
        "medgo-predictor-00001": 100,
    }
    assert not (tmp_path / "record" / "deployment.json").exists()


def test_first_rollout_failure_says_there_is_nothing_to_roll_back_to(
    pipeline_api, admin_api, fake_clock, tmp_path
):
    """No controller at all: the new InferenceService never gets ready (fake clock: 30 s pass instantly)."""
    deployer = InferenceServiceDeployer(
        client.CustomObjectsApi(pipeline_api), poller=Poller(fake_clock.clock, fake_clock.sleep)
    )
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
    assert "canaryTrafficPercent" not in stored(admin_api)["spec"]["predictor"]


def test_vllm_runtime_mounts_base_and_adapter(deployer, admin_api, kserve_controller, tmp_path):
    adapter = tmp_path / "dpo"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(
        json.dumps({"base_model_name_or_path": "minio://mlpipeline/v2/pt"})
    )
    kserve_controller(dead_url())
    config = CONFIG.model_copy(update={"runtime": "huggingface-vllm"})
    with pytest.raises(MedgoError, match="first rollout"):
        deploy_model(
            model_path=str(adapter),
            model_uri="minio://mlpipeline/v2/dpo",
            config=config,
            record_dir=tmp_path / "r",
            deployer=deployer,
        )
    uris = [u["uri"] for u in stored(admin_api)["spec"]["predictor"]["storageUris"]]
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
