"""InferenceService builder and canary deployer.

The builder's output is validated offline against KServe's published InferenceService CRD (vendored in
tests/fixtures/crds) for the CPU runtime and the Hugging Face/vLLM runtime with and without a LoRA adapter.

The deployer runs against the real API server of tests/k8s/apiserver as the pipeline's ServiceAccount, so
RBAC checks every call and the server applies the merge patches. No KServe controller runs there: tests
write the status it would write (observedGeneration, Ready, revisions) through the status subresource,
and a mutating webhook on 127.0.0.1 plays KServe's defaulting webhook where defaults matter. What the
deployer sent is read back from the server's audit log. Only the test that injects a 500 while polling
uses the in-memory stand-in of conftest.py.
"""

from __future__ import annotations

import re

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from medgo.k8s._common import Poller
from medgo.k8s.inference_service import (
    GROUP,
    PLURAL,
    VERSION,
    InferenceServiceDeployer,
    build_inference_service,
    canary_name,
    deployment_mode,
    standard_canary,
)
from tests.fixtures.crds import assert_valid_crd_object, crd_errors

GPU = "nvidia.com/gpu"
A100 = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "node-pool": "a100"}
GPU_TOLERATION = {"key": GPU, "operator": "Exists", "effect": "NoSchedule"}


def gpu_resources(n: int) -> dict:
    limits = {"cpu": "8", "memory": "64Gi", GPU: str(n)}
    return {"requests": dict(limits), "limits": dict(limits)}


def cpu_isvc(**overrides):
    params = dict(
        name="medgo", namespace="medgo", storage_uri="s3://medgo-models/medgo/v1", runtime="medgo-cpu"
    )
    params.update(overrides)
    return build_inference_service(**params)


def predictor(isvc):
    return isvc["spec"]["predictor"]


# -- builder ---------------------------------------------------------------------------------------------


def test_cpu_runtime_isvc_is_valid():
    isvc = cpu_isvc()
    assert_valid_crd_object(isvc)
    assert (isvc["apiVersion"], isvc["kind"]) == ("serving.kserve.io/v1beta1", "InferenceService")
    pred = predictor(isvc)
    assert pred["serviceAccountName"] == "medgo-serving"
    assert (pred["minReplicas"], pred["maxReplicas"]) == (1, 1)
    assert "canaryTrafficPercent" not in pred
    model = pred["model"]
    assert model["modelFormat"] == {"name": "medgo"}
    assert model["runtime"] == "medgo-cpu"
    assert model["storageUri"] == "s3://medgo-models/medgo/v1"
    assert "args" not in model
    assert model["resources"]["limits"] == {"cpu": "2", "memory": "4Gi"}
    assert pred["securityContext"]["runAsNonRoot"] is True
    assert model["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_vllm_runtime_on_one_gpu_is_valid():
    isvc = build_inference_service(
        name="medgo",
        namespace="medgo",
        storage_uri="s3://medgo-models/medgo/merged",
        runtime="huggingface-vllm",
        node_selector=A100,
        tolerations=[GPU_TOLERATION],
        priority_class="medgo-serving",
    )
    assert_valid_crd_object(isvc)
    pred = predictor(isvc)
    model = pred["model"]
    assert model["modelFormat"] == {"name": "huggingface"}
    assert model["runtime"] == "kserve-huggingfaceserver"
    assert model["args"] == ["--backend=vllm"]
    assert model["storageUri"] == "s3://medgo-models/medgo/merged"
    assert model["resources"]["limits"][GPU] == "1"
    assert pred["nodeSelector"] == A100 and pred["tolerations"] == [GPU_TOLERATION]
    assert pred["priorityClassName"] == "medgo-serving"
    assert "storageUris" not in pred


def test_vllm_runtime_with_lora_adapter_and_canary_is_valid():
    isvc = build_inference_service(
        name="medgo",
        namespace="medgo",
        storage_uri="s3://medgo-models/medgo/v2/base",
        runtime="huggingface-vllm",
        lora_adapter_uri="s3://medgo-models/medgo/v2/adapter",
        resources=gpu_resources(4),
        canary_traffic_percent=10,
        min_replicas=1,
        max_replicas=3,
        max_lora_rank=128,
    )
    assert_valid_crd_object(isvc)
    pred = predictor(isvc)
    assert pred["canaryTrafficPercent"] == 10
    assert pred["maxReplicas"] == 3
    # KServe rejects storageUri together with storageUris, and needs a common parent directory.
    assert "storageUri" not in pred["model"]
    assert pred["storageUris"] == [
        {"uri": "s3://medgo-models/medgo/v2/base", "mountPath": "/mnt/models/base"},
        {"uri": "s3://medgo-models/medgo/v2/adapter", "mountPath": "/mnt/models/adapter"},
    ]
    assert pred["model"]["args"] == [
        "--backend=vllm",
        "--tensor-parallel-size=4",
        "--model_dir=/mnt/models/base",
        "--enable-lora",
        "--max-lora-rank=128",
        "--lora-modules=medgo-lora=/mnt/models/adapter",
    ]


def test_canary_zero_is_kept():
    assert predictor(cpu_isvc(canary_traffic_percent=0))["canaryTrafficPercent"] == 0


def test_strict_schema_catches_a_misspelt_field():
    isvc = cpu_isvc()
    predictor(isvc)["canaryTraficPercent"] = 10
    assert any("canaryTraficPercent" in e for e in crd_errors(isvc))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"runtime": "triton"}, "runtime must be one of ['huggingface-vllm', 'medgo-cpu']"),
        ({"name": "MedGo"}, "InferenceService name 'MedGo' must be a DNS-1035 label"),
        ({"name": "m" * 48}, "at most 47 characters"),
        ({"namespace": "a_b"}, "namespace 'a_b' must be a DNS-1123 label"),
        ({"storage_uri": "/models/medgo"}, "storage_uri '/models/medgo' must be a URI KServe can download"),
        ({"canary_traffic_percent": 101}, "canary_traffic_percent must be an int from 0 to 100"),
        ({"canary_traffic_percent": True}, "canary_traffic_percent must be an int from 0 to 100"),
        ({"min_replicas": -1}, "min_replicas must be an int >= 0"),
        ({"min_replicas": 3, "max_replicas": 2}, "max_replicas (2) must be >= max(min_replicas, 1)"),
        ({"max_replicas": 0, "min_replicas": 0}, "max_replicas (0) must be >= max(min_replicas, 1)"),
        ({"lora_adapter_uri": "s3://b/a"}, "lora_adapter_uri needs runtime='huggingface-vllm'"),
        ({"resources": {"limits": {GPU: "1"}}}, "the medgo-cpu runtime is CPU-only"),
        ({"resources": {"limit": {"cpu": "1"}}}, "resources may only have 'requests' and 'limits'"),
        (
            {"resources": {"limits": {"memory": "4 GB"}}},
            "resources.limits.memory '4 GB' is not a Kubernetes quantity",
        ),
        (
            {"runtime": "huggingface-vllm", "resources": {"limits": {"cpu": "8"}}},
            "needs resources.limits['nvidia.com/gpu'] between 1 and 8",
        ),
        ({"runtime": "huggingface-vllm", "resources": gpu_resources(9)}, "between 1 and 8, got '9'"),
        ({"runtime": "huggingface-vllm", "resources": {"limits": {GPU: "0.5"}}}, "must be a whole number"),
        (
            {"runtime": "huggingface-vllm", "lora_adapter_uri": "s3://b/a", "max_lora_rank": 0},
            "max_lora_rank must be a positive int",
        ),
        ({"service_account": "Medgo"}, "service_account 'Medgo' must be a DNS-1123 label"),
        ({"tolerations": "nvidia.com/gpu"}, "tolerations must be a list of toleration dicts"),
        ({"node_selector": {"node-pool": 1}}, "label keys and values must be strings"),
    ],
)
def test_invalid_parameters_raise_value_error_naming_them(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        cpu_isvc(**overrides)


# -- deployer, against the real API server ----------------------------------------------------------------


@pytest.fixture
def deployer(pipeline_api, change_signal):
    return InferenceServiceDeployer(client.CustomObjectsApi(pipeline_api), poller=change_signal.poller())


@pytest.fixture
def clocked_deployer(pipeline_api, fake_clock):
    """A deployer whose waits run on a fake clock (time advances instantly; each sleep runs the next step)."""
    return InferenceServiceDeployer(
        client.CustomObjectsApi(pipeline_api), poller=Poller(clock=fake_clock.clock, sleep=fake_clock.sleep)
    )


def stored(admin_api, name="medgo"):
    return client.CustomObjectsApi(admin_api).get_namespaced_custom_object(
        GROUP, VERSION, "medgo", PLURAL, name
    )


def sent(kube, since: int, verb: str) -> list:
    """What the pipeline sent with ``verb`` to InferenceServices, from the API server's audit log."""
    return [
        e.get("requestObject")
        for e in kube.audit_events(since)
        if e["verb"] == verb and e["objectRef"]["resource"] == PLURAL
    ]


def test_apply_creates_then_leaves_an_unchanged_service_alone(kube, deployer):
    mark = kube.audit_offset()
    created = deployer.apply(cpu_isvc())
    assert created["metadata"]["generation"] == 1
    again = deployer.apply(cpu_isvc())
    assert again["metadata"]["generation"] == 1
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]
    assert sent(kube, mark, "patch") == []


def test_apply_updates_with_a_merge_patch_and_canary(kube, deployer, admin_api):
    deployer.apply(cpu_isvc())
    mark = kube.audit_offset()
    patched = deployer.apply(cpu_isvc(storage_uri="s3://medgo-models/medgo/v2", canary_traffic_percent=20))
    assert sent(kube, mark, "patch") == [
        {
            "spec": {
                "predictor": {
                    "model": {"storageUri": "s3://medgo-models/medgo/v2"},
                    "canaryTrafficPercent": 20,
                }
            },
            # a canary gets its own tagged URL so the smoke test reaches it
            "metadata": {"annotations": {"serving.kserve.io/enable-tag-routing": "true"}},
        }
    ]
    assert patched["metadata"]["generation"] == 2
    assert predictor(stored(admin_api))["canaryTrafficPercent"] == 20


def test_apply_removes_fields_the_new_spec_does_not_set(deployer, admin_api):
    gpu = dict(runtime="huggingface-vllm", resources=gpu_resources(1))
    deployer.apply(cpu_isvc(storage_uri="s3://m/v1", canary_traffic_percent=10, **gpu))
    deployer.apply(cpu_isvc(storage_uri="s3://m/v2/base", lora_adapter_uri="s3://m/v2/adapter", **gpu))
    obj = stored(admin_api)
    assert "storageUri" not in predictor(obj)["model"]  # KServe would reject it next to storageUris
    assert "canaryTrafficPercent" not in predictor(obj)
    assert [s["uri"] for s in predictor(obj)["storageUris"]] == ["s3://m/v2/base", "s3://m/v2/adapter"]
    assert_valid_crd_object({k: obj[k] for k in ("apiVersion", "kind", "metadata", "spec")})


def test_apply_keeps_server_defaults_stable(kube, deployer, admin_api):
    """A real mutating webhook (on 127.0.0.1, called by the API server) adds ``protocolVersion: v1`` like
    KServe's defaulter; re-applying the same spec must not change the stored spec or bump the generation."""
    from tests.k8s.apiserver.controllers import INFERENCESERVICE, DefaultingWebhook

    def kserve_defaults(obj):
        model = obj["spec"]["predictor"]["model"]
        return (
            []
            if "protocolVersion" in model
            else [{"op": "add", "path": "/spec/predictor/model/protocolVersion", "value": "v1"}]
        )

    webhook = DefaultingWebhook(kube, INFERENCESERVICE, kserve_defaults, probe=cpu_isvc(name="probe")).start()
    try:
        deployer.apply(cpu_isvc())
        deployer.apply(cpu_isvc())
    finally:
        webhook.stop()
    obj = stored(admin_api)
    assert obj["spec"]["predictor"]["model"]["protocolVersion"] == "v1"
    assert obj["metadata"]["generation"] == 1
    assert "CREATE" in webhook.reviews


def test_apply_merges_labels_without_removing_others(deployer, admin_api):
    deployer.apply(cpu_isvc())
    client.CustomObjectsApi(admin_api).patch_namespaced_custom_object(
        GROUP, VERSION, "medgo", PLURAL, "medgo", {"metadata": {"labels": {"owner": "ml-platform"}}}
    )
    deployer.apply(cpu_isvc(labels={"medgo.io/run": "r42"}))
    labels = stored(admin_api)["metadata"]["labels"]
    assert labels["owner"] == "ml-platform" and labels["medgo.io/run"] == "r42"


def test_apply_propagates_other_api_errors(deployer):
    with pytest.raises(ApiException) as info:  # the pipeline's Role covers namespace medgo only
        deployer.apply(cpu_isvc(namespace="default"))
    assert info.value.status == 403


def _status(
    admin_api,
    *,
    ready: str,
    observed: int,
    created="medgo-predictor-00001",
    latest_ready="medgo-predictor-00001",
    reason="",
):
    """A step writing the status KServe's controller would, through the status subresource."""

    def step():
        client.CustomObjectsApi(admin_api).patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            "medgo",
            PLURAL,
            "medgo",
            {
                "status": {
                    "observedGeneration": observed,
                    "url": "http://medgo.medgo.example.com",
                    "conditions": [
                        {"type": "PredictorReady", "status": ready},
                        {"type": "Ready", "status": ready, "reason": reason},
                    ],
                    "components": {
                        "predictor": {"latestCreatedRevision": created, "latestReadyRevision": latest_ready}
                    },
                }
            },
        )

    return step


def test_status_writes_never_bump_the_generation(deployer, admin_api):
    deployer.apply(cpu_isvc())
    _status(admin_api, ready="True", observed=1)()
    obj = stored(admin_api)
    assert obj["metadata"]["generation"] == 1 and obj["status"]["observedGeneration"] == 1


def test_wait_ready_waits_for_ready_on_the_current_generation(clocked_deployer, admin_api, fake_clock):
    deployer = clocked_deployer
    deployer.apply(cpu_isvc())
    _status(admin_api, ready="True", observed=1)()
    deployer.apply(
        cpu_isvc(storage_uri="s3://medgo-models/medgo/v2", canary_traffic_percent=10)
    )  # generation 2
    fake_clock.steps = [
        _status(admin_api, ready="True", observed=1),  # stale: the controller has not seen the patch yet
        _status(
            admin_api, ready="True", observed=2, created="medgo-predictor-00002"
        ),  # canary still starting
        _status(
            admin_api,
            ready="True",
            observed=2,
            created="medgo-predictor-00002",
            latest_ready="medgo-predictor-00002",
        ),
    ]
    isvc = deployer.wait_ready("medgo", "medgo", timeout_s=600, poll_s=15)
    assert isvc["status"]["components"]["predictor"]["latestReadyRevision"] == "medgo-predictor-00002"
    assert fake_clock.sleeps == [15, 15, 15]


def test_wait_ready_times_out_with_the_reason(clocked_deployer, admin_api):
    clocked_deployer.apply(cpu_isvc())
    _status(admin_api, ready="False", observed=1, reason="RevisionMissing")()
    with pytest.raises(TimeoutError, match="not ready within 30s: Ready=False: RevisionMissing"):
        clocked_deployer.wait_ready("medgo", "medgo", timeout_s=30, poll_s=10)


def test_wait_ready_tolerates_transient_errors(custom_api, server, fake_clock):
    """In-memory stand-in: a healthy API server never answers 500 on demand."""
    deployer = InferenceServiceDeployer(
        custom_api, poller=Poller(clock=fake_clock.clock, sleep=fake_clock.sleep)
    )
    deployer.apply(cpu_isvc())
    server.failures[("GET", "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}")] = [
        ApiException(status=500, reason="etcd timeout")
    ]
    fake_clock.steps = [
        lambda: server.set_status(
            GROUP,
            VERSION,
            "medgo",
            PLURAL,
            "medgo",
            {"observedGeneration": 1, "conditions": [{"type": "Ready", "status": "True"}]},
        )
    ]
    assert deployer.wait_ready("medgo", "medgo", timeout_s=60, poll_s=5)["status"]["observedGeneration"] == 1


def test_promote_removes_canary_traffic_percent(kube, deployer):
    deployer.apply(cpu_isvc(canary_traffic_percent=10))
    mark = kube.audit_offset()
    promoted = deployer.promote("medgo", "medgo")
    assert "canaryTrafficPercent" not in predictor(promoted)
    assert sent(kube, mark, "patch") == [{"spec": {"predictor": {"canaryTrafficPercent": None}}}]


def test_rollback_pins_traffic_to_the_previous_revision(deployer):
    deployer.apply(cpu_isvc(canary_traffic_percent=10))
    rolled_back = deployer.rollback("medgo", "medgo")
    assert predictor(rolled_back)["canaryTrafficPercent"] == 0
    assert predictor(rolled_back)["model"]["storageUri"] == "s3://medgo-models/medgo/v1"


def test_promote_of_a_missing_service_raises_not_found(deployer):
    with pytest.raises(ApiException) as info:
        deployer.promote("medgo", "medgo")
    assert info.value.status == 404


def test_get(deployer):
    assert deployer.get("medgo", "medgo") is None
    deployer.apply(cpu_isvc())
    assert deployer.get("medgo", "medgo")["metadata"]["name"] == "medgo"


def test_accepts_canary_is_a_dry_run_that_writes_nothing(kube, deployer, admin_api):
    deployer.apply(cpu_isvc(deployment_mode="Standard"))
    with_canary = cpu_isvc(deployment_mode="Standard")
    with_canary["spec"]["canary"] = [standard_canary(predictor(cpu_isvc()), "c1", 10)]
    mark = kube.audit_offset()
    assert deployer.accepts_canary(with_canary) is True  # the vendored (0.20+) CRD knows spec.canary
    assert "canary" not in stored(admin_api)["spec"] and stored(admin_api)["metadata"]["generation"] == 1
    patches = [e for e in kube.audit_events(mark) if e["verb"] == "patch"]
    assert patches and all("dryRun=All" in e["requestURI"] for e in patches)


# -- complete predictors, autoscaling, modes ---------------------------------------------------------------


def test_serverless_autoscaling_matches_the_servers_batch_and_queue():
    isvc = cpu_isvc(deployment_mode="Serverless", max_batch_size=16, max_queue=48, max_replicas=5)
    assert_valid_crd_object(isvc)
    pred = predictor(isvc)
    # A replica holds batch + queue before it would answer 503; Knative buffers beyond that and scales
    # once batches are full.
    assert (pred["containerConcurrency"], pred["scaleMetric"], pred["scaleTarget"]) == (64, "concurrency", 16)
    assert pred["model"]["args"] == ["--max_batch_size=16", "--max_queue=48"]
    assert isvc["metadata"]["annotations"] == {"serving.kserve.io/deploymentMode": "Serverless"}


def test_standard_mode_uses_the_hpa_and_a_server_without_a_queue_option_gets_none():
    isvc = cpu_isvc(deployment_mode="Standard", max_batch_size=8, max_queue=None)
    assert_valid_crd_object(isvc)
    pred = predictor(isvc)
    assert "containerConcurrency" not in pred and (pred["scaleMetric"], pred["scaleTarget"]) == ("cpu", 80)
    assert pred["model"]["args"] == ["--max_batch_size=8"]


def test_vllm_bounds_its_batch_with_max_num_seqs():
    isvc = cpu_isvc(runtime="huggingface-vllm", resources=gpu_resources(1), max_batch_size=32, max_queue=32)
    assert predictor(isvc)["model"]["args"] == ["--backend=vllm", "--max-num-seqs=32"]
    assert predictor(isvc)["containerConcurrency"] == 64


def test_standard_canary_has_no_autoscaling_and_at_least_one_replica():
    stable = predictor(cpu_isvc(deployment_mode="Standard", min_replicas=0, max_replicas=3, max_batch_size=4))
    entry = standard_canary(stable, canary_name(stable), 0)
    assert entry["trafficPercent"] == 0 and entry["predictor"]["minReplicas"] == 1
    assert not {"maxReplicas", "scaleMetric", "scaleTarget", "containerConcurrency"} & set(entry["predictor"])
    assert canary_name(stable) == canary_name({**stable, "name": "other"})  # the model, not the name, decides
    assert canary_name(stable) != canary_name(
        predictor(cpu_isvc(storage_uri="s3://m/v9", deployment_mode="Standard"))
    )
    isvc = cpu_isvc(deployment_mode="Standard")
    isvc["spec"]["canary"] = [entry]
    assert_valid_crd_object(isvc)


@pytest.mark.parametrize(
    ("isvc", "mode"),
    [
        ({"metadata": {"annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"}}}, "Standard"),
        ({"metadata": {}, "status": {"deploymentMode": "Knative"}}, "Serverless"),
        ({"metadata": {"annotations": {"serving.kserve.io/deploymentMode": "ModelMesh"}}}, "ModelMesh"),
        ({"metadata": {}}, None),
    ],
)
def test_deployment_mode_reads_annotation_then_status_and_knows_the_old_names(isvc, mode):
    assert deployment_mode(isvc) == mode
