"""The training component's cluster path: TrainConfig → PyTorchJob → wait → outcome.

The Kubernetes API is the in-memory stand-in of conftest.py (no API server can run in this sandbox for
this stage); scripted clock steps play the training operator by writing the job's status.
"""

from __future__ import annotations

import pytest

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
def launcher(custom_api, core_api, fake_clock):
    return PyTorchJobLauncher(custom_api, core_api, poller=Poller(fake_clock.clock, fake_clock.sleep))


def job(server) -> dict:
    return server.get(GROUP, VERSION, "medgo", PLURAL, "medgo-sft-abc123")


def operator_sets(server, *conditions):
    def step():
        server.set_status(
            GROUP,
            VERSION,
            "medgo",
            PLURAL,
            "medgo-sft-abc123",
            {"conditions": [dict(c, status="True") for c in conditions]},
        )

    return step


def test_job_carries_the_config_and_the_gpu_pool_and_succeeds(server, launcher, fake_clock):
    fake_clock.steps = [
        operator_sets(server, {"type": "Created"}, {"type": "Running"}),
        operator_sets(server, {"type": "Succeeded"}),
    ]
    launch(CONFIG, LaunchConfig(**CLUSTER), launcher=launcher)
    obj = job(server)
    assert_valid_crd_object({k: obj[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    specs = obj["spec"]["pytorchReplicaSpecs"]
    assert specs["Master"]["replicas"] == 1 and specs["Worker"]["replicas"] == 7
    pod = specs["Worker"]["template"]["spec"]
    assert pod["nodeSelector"]["nvidia.com/gpu.product"] == "NVIDIA-A100-SXM4-80GB"
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in pod["tolerations"]
    assert pod["priorityClassName"] == "medgo-training"
    (container,) = pod["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] in (8, "8")
    # The pods' trainer rebuilds exactly this TrainConfig from the command line.
    command = container["command"]
    assert command[:3] == ["python", "-m", "medgo.train.node"]
    args = parse_args(command[3:])
    assert load_config(TrainConfig, args.config, args.overrides, stage=args.stage) == CONFIG


def test_failed_job_reports_the_reason_and_the_master_log(server, launcher, fake_clock):
    server.add_pod(
        "medgo",
        "medgo-sft-abc123-master-0",
        {
            "training.kubeflow.org/job-name": "medgo-sft-abc123",
            "training.kubeflow.org/replica-type": "master",
        },
        logs={"pytorch": "step 10 loss 2.1\nerror: SFT data not found: minio://mlpipeline/v2/sft\n"},
    )
    fake_clock.steps = [
        operator_sets(
            server, {"type": "Failed", "reason": "PyTorchJobFailed", "message": "master-0 exited with code 2"}
        )
    ]
    with pytest.raises(
        MedgoError, match=r"(?s)PyTorchJobFailed: master-0 exited with code 2.*SFT data not found"
    ):
        launch(CONFIG, LaunchConfig(**CLUSTER), launcher=launcher)


def test_timeout_deletes_the_job(server, launcher):
    with pytest.raises(MedgoError, match="did not finish within 3600s.*deleted"):
        launch(CONFIG, LaunchConfig(**CLUSTER), launcher=launcher)
    assert not server.objects, "the timed-out job was not deleted"


def test_retried_step_attaches_to_the_running_job(server, launcher, fake_clock):
    fake_clock.steps = [operator_sets(server, {"type": "Succeeded"})]
    launch(CONFIG, LaunchConfig(**CLUSTER), launcher=launcher)
    launch(CONFIG, LaunchConfig(**CLUSTER), launcher=launcher)  # the job exists, same spec, already Succeeded
    assert len(server.calls("POST")) == 2 and len([c for c in server.calls("GET")]) >= 2


def test_retry_after_a_failed_attempt_trains_again(server, launcher, fake_clock):
    fake_clock.steps = [operator_sets(server, {"type": "Failed", "reason": "OOMKilled", "message": "rank 3"})]
    with pytest.raises(MedgoError, match="OOMKilled"):
        launch(CONFIG, LaunchConfig(**CLUSTER), launcher=launcher)
    fake_clock.steps = [operator_sets(server, {"type": "Succeeded"})]
    launch(CONFIG, LaunchConfig(**CLUSTER), launcher=launcher)  # the KFP retry: same name, same spec
    assert len(server.calls("DELETE")) == 1 and len(server.calls("POST")) == 3  # create, 409, re-create
    assert job(server)["status"]["conditions"][0]["type"] == "Succeeded"


def test_unknown_backend_and_missing_image_are_clear_errors():
    with pytest.raises(ConfigError, match="backend"):
        load_config(LaunchConfig, backend="slurm")
    with pytest.raises(MedgoError, match="needs an image and a job name"):
        launch(CONFIG, LaunchConfig(backend="pytorchjob", job_name="x"))
