"""The training component's cluster path: TrainConfig → PyTorchJob → wait → outcome.

Runs against the real API server of tests/k8s/apiserver as the pipeline's ServiceAccount (RBAC checks
every call). No training operator runs there: ``TrainingOperatorSim`` plays it, creating the master pod
and writing the job's status through the status subresource as watch events arrive; a small HTTPS server
plays the kubelet serving the master's log. The timeout test uses a fake clock (a real server, but time
that advances instantly).
"""

from __future__ import annotations

import pytest
from kubernetes import client

from medgo.config import LaunchConfig, TrainConfig, load_config
from medgo.errors import ConfigError, MedgoError
from medgo.k8s._common import Poller
from medgo.k8s.pytorchjob import GROUP, PLURAL, VERSION, PyTorchJobLauncher
from medgo.train.launch import launch
from medgo.train.trainer import parse_args
from tests.fixtures.crds import assert_valid_crd_object

CONFIG = TrainConfig(
    stage="sft",
    model_uri="minio://mlpipeline/v2/pt/trained",
    data_uri="minio://mlpipeline/v2/sft",
    output_uri="minio://mlpipeline/v2/sft/trained",
    deepspeed="zero3",
    bf16=True,
)
CLUSTER = dict(
    backend="pytorchjob",
    nnodes=8,
    nproc_per_node=8,
    gpus_per_node=8,
    image="ghcr.io/medgo/medgo-trainer:0.1.0",
    namespace="medgo",
    job_name="medgo-sft-abc123",
    gpu_product="NVIDIA-A100-SXM4-80GB",
    timeout_s=3600,
)


@pytest.fixture
def launcher(pipeline_api, change_signal):
    return PyTorchJobLauncher(
        client.CustomObjectsApi(pipeline_api), client.CoreV1Api(pipeline_api), poller=change_signal.poller()
    )


def job(admin_api) -> dict:
    return client.CustomObjectsApi(admin_api).get_namespaced_custom_object(
        GROUP, VERSION, "medgo", PLURAL, "medgo-sft-abc123"
    )


def test_job_carries_the_config_and_the_gpu_pool_and_succeeds(launcher, admin_api, training_operator):
    training_operator([{"type": "Succeeded"}])
    launch(CONFIG, LaunchConfig(**CLUSTER), launcher=launcher)
    obj = job(admin_api)
    assert [c["type"] for c in obj["status"]["conditions"]] == ["Created", "Running", "Succeeded"]
    assert_valid_crd_object({k: obj[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    specs = obj["spec"]["pytorchReplicaSpecs"]
    assert specs["Master"]["replicas"] == 1 and specs["Worker"]["replicas"] == 7
    pod = specs["Worker"]["template"]["spec"]
    assert pod["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["priorityClassName"] == "medgo-training"
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] in (8, "8")
    # The pods' trainer rebuilds exactly this TrainConfig from the command line the server stored.
    command = container["command"]
    assert command[:3] == ["python", "-m", "medgo.train.node"]
    args = parse_args(command[3:])
    assert load_config(TrainConfig, args.config, args.overrides, stage=args.stage) == CONFIG
    # The operator's master pod was admitted from the job's template (ServiceAccount, PriorityClass exist).
    pod = client.CoreV1Api(admin_api).read_namespaced_pod("medgo-sft-abc123-master-0", "medgo")
    training_priority = client.SchedulingV1Api(admin_api).read_priority_class("medgo-training").value
    assert pod.spec.priority_class_name == "medgo-training" and pod.spec.priority == training_priority


def test_failed_job_reports_the_reason_and_the_master_log(launcher, training_operator):
    training_operator(
        [{"type": "Failed", "reason": "PyTorchJobFailed", "message": "master-0 exited with code 2"}],
        master_log="step 10 loss 2.1\nerror: SFT data not found: minio://mlpipeline/v2/sft\n",
    )
    with pytest.raises(
        MedgoError, match=r"(?s)PyTorchJobFailed: master-0 exited with code 2.*SFT data not found"
    ):
        launch(CONFIG, LaunchConfig(**CLUSTER), launcher=launcher)


def test_timeout_deletes_the_job(pipeline_api, admin_api, training_operator, fake_clock):
    training_operator([None])  # Running forever
    launcher = PyTorchJobLauncher(
        client.CustomObjectsApi(pipeline_api),
        client.CoreV1Api(pipeline_api),
        poller=Poller(fake_clock.clock, fake_clock.sleep),
    )
    with pytest.raises(MedgoError, match="did not finish within 3600s.*deleted"):
        launch(CONFIG, LaunchConfig(**CLUSTER), launcher=launcher)
    with pytest.raises(client.exceptions.ApiException) as info:
        job(admin_api)
    assert info.value.status == 404, "the timed-out job was not deleted"


def test_retried_step_attaches_to_the_finished_job(launcher, admin_api, training_operator):
    operator = training_operator([{"type": "Succeeded"}])
    launch(CONFIG, LaunchConfig(**CLUSTER), launcher=launcher)
    launch(CONFIG, LaunchConfig(**CLUSTER), launcher=launcher)  # the job exists, same spec, already Succeeded
    assert len(operator.attempts["medgo-sft-abc123"]) == 1, "the retry started a second training run"
    assert job(admin_api)["metadata"]["uid"] == operator.attempts["medgo-sft-abc123"][0]


def test_retry_after_a_failed_attempt_trains_again(launcher, admin_api, training_operator):
    operator = training_operator(
        [{"type": "Failed", "reason": "OOMKilled", "message": "rank 3"}, {"type": "Succeeded"}]
    )
    with pytest.raises(MedgoError, match="OOMKilled"):
        launch(CONFIG, LaunchConfig(**CLUSTER), launcher=launcher)
    launch(CONFIG, LaunchConfig(**CLUSTER), launcher=launcher)  # the KFP retry: same name, same spec
    first, second = operator.attempts["medgo-sft-abc123"]
    stored = job(admin_api)
    assert stored["metadata"]["uid"] == second != first
    assert stored["status"]["conditions"][-1]["type"] == "Succeeded"


def test_unknown_backend_and_missing_image_are_clear_errors():
    with pytest.raises(ConfigError, match="backend"):
        load_config(LaunchConfig, backend="slurm")
    with pytest.raises(MedgoError, match="needs an image and a job name"):
        launch(CONFIG, LaunchConfig(backend="pytorchjob", job_name="x"))
