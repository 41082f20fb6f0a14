"""The training component's cluster path: TrainConfig → PyTorchJob → wait → outcome.

The Kubernetes API is the in-memory stand-in of conftest.py (no API server can run in this sandbox for
this stage); scripted clock steps play the training operator by writing the job's status.
"""

from __future__ import annotations

import pytest

from medgo.config import LaunchConfig, TrainConfig, load_config
from medgo.errors import ConfigError, MedgoError
from medgo.k8s import trainjob
from medgo.k8s._common import Poller
from medgo.k8s.pytorchjob import GROUP, PLURAL, VERSION, PyTorchJobLauncher
from medgo.k8s.trainjob import TrainJobLauncher
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
    cpu="34",
    memory="110Gi",
    shm_size="16Gi",
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
    ran = load_config(TrainConfig, args.config, args.overrides, stage=args.stage)
    # ... with its checkpoints on the checkpoint PVC under the job's name: a restarted pod resumes from them
    assert ran == CONFIG.model_copy(update={"checkpoint_uri": "/mnt/medgo-checkpoints/medgo-sft-abc123"})
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/mnt/medgo-checkpoints", "/mnt/medgo-data", "/dev/shm"} <= mounts
    assert container["resources"]["limits"]["memory"] == "110Gi"
    assert obj["spec"]["runPolicy"]["backoffLimit"] == 3  # restarts, each resuming


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


def _master_pod(server, status, name="medgo-sft-abc123"):
    server.add_pod(
        "medgo",
        f"{name}-master-0",
        {"training.kubeflow.org/job-name": name, "training.kubeflow.org/replica-type": "master"},
        logs={"pytorch": "loading shards\n"},
        status=status,
        memory_limit="110Gi",
    )


def test_unschedulable_pods_fail_the_step_fast_and_delete_the_job(server, launcher, fake_clock):
    fake_clock.steps = [
        operator_sets(server, {"type": "Created"}),
        lambda: _master_pod(
            server,
            {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
                    }
                ],
            },
        ),
    ]
    with pytest.raises(
        MedgoError, match=r"Unschedulable: pod medgo-sft-abc123-master-0: 0/4 nodes.*job was deleted"
    ):
        launch(CONFIG, LaunchConfig(**CLUSTER), launcher=launcher)
    assert not server.objects and fake_clock.now < 300  # minutes, not the 1 h timeout


def test_an_oom_killed_trainer_fails_the_step_fast_with_the_limit(server, launcher, fake_clock):
    oom = {
        "phase": "Running",
        "containerStatuses": [
            {
                "name": "pytorch",
                "ready": False,
                "restartCount": 1,
                "image": "x",
                "imageID": "",
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
            }
        ],
    }
    fake_clock.steps = [operator_sets(server, {"type": "Running"}), lambda: _master_pod(server, oom)]
    with pytest.raises(MedgoError, match=r"OOMKilled: .*memory limit \(110Gi\).*job was deleted"):
        launch(CONFIG, LaunchConfig(**CLUSTER), launcher=launcher)
    assert not server.objects


def test_a_cancelled_step_deletes_its_job(server, launcher, fake_clock):
    def cancel():
        raise KeyboardInterrupt("SIGTERM from KFP")

    fake_clock.steps = [operator_sets(server, {"type": "Running"}), cancel]
    with pytest.raises(KeyboardInterrupt):
        launch(CONFIG, LaunchConfig(**CLUSTER), launcher=launcher)
    assert not server.objects and len(server.calls("DELETE")) == 1


def test_a_restarting_job_is_followed_to_success(server, launcher, fake_clock):
    """The operator restarts failed pods (backoffLimit); the launcher waits them out: each resumes."""
    fake_clock.steps = [
        operator_sets(server, {"type": "Running"}),
        operator_sets(server, {"type": "Restarting", "reason": "PyTorchJobRestarting"}),
        operator_sets(server, {"type": "Running"}),
        operator_sets(server, {"type": "Succeeded"}),
    ]
    launch(CONFIG, LaunchConfig(**CLUSTER), launcher=launcher)
    assert job(server)["status"]["conditions"][0]["type"] == "Succeeded"


def test_trainjob_backend_submits_a_trainer_v2_job_and_follows_it(server, custom_api, core_api, fake_clock):
    launcher = TrainJobLauncher(custom_api, core_api, poller=Poller(fake_clock.clock, fake_clock.sleep))

    def trainer_sets(*conditions):
        return lambda: server.set_status(
            trainjob.GROUP,
            trainjob.VERSION,
            "medgo",
            trainjob.PLURAL,
            "medgo-sft-abc123",
            {"conditions": [dict(c, status="True") for c in conditions]},
        )

    fake_clock.steps = [trainer_sets({"type": "Created"}), trainer_sets({"type": "Complete"})]
    launch(CONFIG, LaunchConfig(**{**CLUSTER, "backend": "trainjob"}), launcher=launcher)
    obj = server.get(trainjob.GROUP, trainjob.VERSION, "medgo", trainjob.PLURAL, "medgo-sft-abc123")
    assert_valid_crd_object({k: obj[k] for k in ("apiVersion", "kind", "metadata", "spec")})
    spec = obj["spec"]
    assert spec["runtimeRef"] == {
        "apiGroup": "trainer.kubeflow.org",
        "kind": "ClusterTrainingRuntime",
        "name": "torch-distributed",
    }
    assert spec["trainer"]["numNodes"] == 8 and spec["trainer"]["numProcPerNode"] == 8
    assert spec["trainer"]["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "8"
    (override,) = spec["podSpecOverrides"]
    assert override["targetJobs"] == [{"name": "node"}]
    assert {v["name"] for v in override["volumes"]} == {"dshm", "medgo-data", "medgo-checkpoints"}
    args = parse_args(spec["trainer"]["command"][3:])
    assert (
        load_config(TrainConfig, None, args.overrides).checkpoint_uri
        == "/mnt/medgo-checkpoints/medgo-sft-abc123"
    )
    watches = [c for c in server.calls("GET") if c["query"].get("watch")]
    assert watches and all(c["params"]["plural"] == "trainjobs" for c in watches)


def test_pods_are_sized_by_the_planner_from_the_models_config(server, launcher, fake_clock, tmp_path):
    from transformers import Qwen2Config

    Qwen2Config(
        hidden_size=8192, num_hidden_layers=80, num_attention_heads=64, num_key_value_heads=8,
        intermediate_size=29568, vocab_size=152064, tie_word_embeddings=False,
    ).save_pretrained(tmp_path / "qwen2-72b")  # fmt: skip
    config = CONFIG.model_copy(update={"model_uri": str(tmp_path / "qwen2-72b"), "load_dtype": "bfloat16"})
    fake_clock.steps = [operator_sets(server, {"type": "Succeeded"})]
    unsized = {k: v for k, v in CLUSTER.items() if k not in ("cpu", "memory", "shm_size")}
    launch(config, LaunchConfig(**unsized), launcher=launcher)
    (container,) = job(server)["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"]
    limits = container["resources"]["limits"]
    assert int(limits["cpu"]) >= 16 and int(limits["memory"].removesuffix("Gi")) > 16 + 8 * 6
    shm = next(
        v
        for v in job(server)["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["volumes"]
        if v["name"] == "dshm"
    )
    assert shm["emptyDir"]["sizeLimit"] == "16Gi"


def test_unreadable_model_without_sizes_is_a_clear_error(launcher):
    unsized = {k: v for k, v in CLUSTER.items() if k not in ("cpu", "memory", "shm_size")}
    with pytest.raises(MedgoError, match="cannot size the training pods.*train_memory"):
        launch(CONFIG.model_copy(update={"model_uri": "/nope"}), LaunchConfig(**unsized), launcher=launcher)
