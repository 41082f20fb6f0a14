"""What a real API server does under concurrency, and how the launcher and deployer cope.

All against the real API server of tests/k8s/apiserver, the code under test as the pipeline's
ServiceAccount. The training operator is simulated (``TrainingOperatorSim``: status written through the
status subresource as watch events arrive); these tests break its watch, race its writes and delete jobs
underneath the launcher.
"""

from __future__ import annotations

import pytest
from kubernetes import client

from medgo.config import LaunchConfig, TrainConfig
from medgo.errors import MedgoError
from medgo.k8s.inference_service import GROUP as ISVC_GROUP
from medgo.k8s.inference_service import PLURAL as ISVC_PLURAL
from medgo.k8s.inference_service import VERSION as ISVC_VERSION
from medgo.k8s.inference_service import InferenceServiceDeployer, build_inference_service
from medgo.k8s.pytorchjob import GROUP, PLURAL, VERSION, PyTorchJobLauncher, build_pytorchjob
from medgo.train.launch import launch
from tests.k8s.apiserver.cluster import wait_until

IMAGE = "ghcr.io/medgo/medgo-trainer:0.1.0"


def small_job(**overrides) -> dict:
    params = dict(
        name="medgo-sft",
        namespace="medgo",
        image=IMAGE,
        command=["python", "-m", "medgo.train.node", "--stage", "sft"],
        nnodes=1,
        nproc_per_node=1,
    )
    return build_pytorchjob(**{**params, **overrides})


@pytest.fixture
def launcher(pipeline_api, change_signal):
    return PyTorchJobLauncher(
        client.CustomObjectsApi(pipeline_api), client.CoreV1Api(pipeline_api), poller=change_signal.poller()
    )


def test_a_second_create_is_a_409_that_the_launcher_resolves(pipeline_api, launcher):
    custom = client.CustomObjectsApi(pipeline_api)
    custom.create_namespaced_custom_object(GROUP, VERSION, "medgo", PLURAL, small_job())
    with pytest.raises(client.exceptions.ApiException) as info:
        custom.create_namespaced_custom_object(GROUP, VERSION, "medgo", PLURAL, small_job())
    assert info.value.status == 409 and '"reason":"AlreadyExists"' in info.value.body
    # Same name, same spec (compared field by field: no spec-hash annotation on a hand-made job): reused.
    assert launcher.submit(small_job()) == "medgo-sft"


def test_an_update_with_a_stale_resource_version_is_refused_and_the_rollout_survives(pipeline_api, admin_api):
    """The deployer patches without a resourceVersion, so it never fails on a concurrent change; a writer
    holding an older copy is refused (409 Conflict) instead of silently undoing the rollout."""
    deployer = InferenceServiceDeployer(client.CustomObjectsApi(pipeline_api))
    isvc = build_inference_service(
        name="medgo", namespace="medgo", storage_uri="s3://m/v1", runtime="medgo-cpu"
    )
    deployer.apply(isvc)
    admin = client.CustomObjectsApi(admin_api)
    stale = admin.get_namespaced_custom_object(ISVC_GROUP, ISVC_VERSION, "medgo", ISVC_PLURAL, "medgo")
    new = build_inference_service(
        name="medgo",
        namespace="medgo",
        storage_uri="s3://m/v2",
        runtime="medgo-cpu",
        canary_traffic_percent=10,
    )
    deployer.apply(new, exists=True)
    stale["spec"]["predictor"]["minReplicas"] = 2
    with pytest.raises(client.exceptions.ApiException) as info:
        admin.replace_namespaced_custom_object(ISVC_GROUP, ISVC_VERSION, "medgo", ISVC_PLURAL, "medgo", stale)
    assert info.value.status == 409 and "the object has been modified" in info.value.body
    predictor = admin.get_namespaced_custom_object(ISVC_GROUP, ISVC_VERSION, "medgo", ISVC_PLURAL, "medgo")[
        "spec"
    ]["predictor"]
    assert predictor["model"]["storageUri"] == "s3://m/v2" and predictor["canaryTrafficPercent"] == 10


def test_a_broken_watch_resumes_from_its_resource_version_without_losing_the_job(launcher, training_operator):
    """The test closes the operator's watch connection and submits the job while it is down; watching
    again from the last resourceVersion delivers the job's creation, so the job still runs to Succeeded."""
    operator = training_operator([{"type": "Succeeded"}])
    wait_until(operator.watch.is_connected, timeout_s=10, what="operator watching")
    operator.watch.break_connection(hold=True)
    wait_until(lambda: not operator.watch.is_connected(), timeout_s=10, what="watch connection closed")
    launcher.submit(small_job())
    assert ("ADDED", "medgo-sft") not in operator.watch.events
    operator.watch.reconnect()
    job = launcher.wait("medgo-sft", "medgo", timeout_s=30, poll_s=30)
    assert job["status"]["conditions"][-1]["type"] == "Succeeded"
    assert operator.watch.connections == 2 and ("ADDED", "medgo-sft") in operator.watch.events


def test_a_job_deleted_underneath_the_waiting_launcher_is_a_clear_error(launcher, training_operator):
    training_operator(["delete"])  # someone deletes the job once it runs
    launcher.submit(small_job())
    with pytest.raises(RuntimeError, match="PyTorchJob medgo/medgo-sft no longer exists"):
        launcher.wait("medgo-sft", "medgo", timeout_s=30, poll_s=30)


def test_launch_reports_a_job_deleted_underneath_it(launcher, training_operator):
    training_operator(["delete"])
    cfg = TrainConfig(stage="sft", model_uri="s3://m/pt", data_uri="s3://d/sft", output_uri="s3://o/sft")
    with pytest.raises(MedgoError, match="PyTorchJob medgo/medgo-sft-2 no longer exists"):
        launch(
            cfg,
            LaunchConfig(
                backend="pytorchjob",
                image=IMAGE,
                job_name="medgo-sft-2",
                timeout_s=30,
                cpu="4",
                memory="16Gi",
                shm_size="4Gi",
            ),
            launcher=launcher,
        )
