"""The training component's cluster path: TrainConfig → PyTorchJob or TrainJob → watch → outcome.

Runs against the real API server of tests/k8s/apiserver as the pipeline's ServiceAccount (RBAC checks
every call). No operator runs there: ``TrainingOperatorSim`` (PyTorchJob) and ``TrainerV2Sim`` (TrainJob)
play them, creating the master pod and writing the job's status through the status subresource as watch
events arrive; a small HTTPS server plays the kubelet serving the master's log. What the scheduler and the
kubelet would write about a pod (Unschedulable, OOMKilled, a restart) the tests write through the pod's
status subresource. The timeout test uses a fake clock (a real server, but time that advances instantly).
"""

from __future__ import annotations

import re
import time

import pytest
from kubernetes import client

from medgo.config import LaunchConfig, TrainConfig, load_config
from medgo.errors import ConfigError, MedgoError
from medgo.k8s import trainjob
from medgo.k8s._common import Poller, condition
from medgo.k8s.pytorchjob import GROUP, PLURAL, VERSION, PyTorchJobLauncher
from medgo.k8s.trainjob import TrainJobLauncher
from medgo.train.launch import launch
from medgo.train.trainer import parse_args
from tests.fixtures.crds import assert_valid_crd_object
from tests.k8s.apiserver.cluster import wait_until

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
#: What the pods run: the config, with checkpoints on the checkpoint PVC under the job's name.
RAN = CONFIG.model_copy(update={"checkpoint_uri": "/mnt/medgo-checkpoints/medgo-sft-abc123"})


@pytest.fixture
def launcher(pipeline_api, change_signal):
    return PyTorchJobLauncher(
        client.CustomObjectsApi(pipeline_api),
        client.CoreV1Api(pipeline_api),
        poller=change_signal.poller(),
        watch_timeout_s=5,
        poll_s=1,
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
    assert load_config(TrainConfig, args.config, args.overrides, stage=args.stage) == RAN
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert {"/mnt/medgo-checkpoints", "/mnt/medgo-data", "/dev/shm"} <= mounts
    assert container["resources"]["limits"]["memory"] == "110Gi"
    assert obj["spec"]["runPolicy"]["backoffLimit"] == 3  # failed pods restart, each resuming
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
        watch_timeout_s=1,
    )
    with pytest.raises(MedgoError, match="did not finish within 300s.*deleted"):
        # the simulated pod stays Pending (no kubelet): keep that from failing the step first
        launch(
            CONFIG,
            LaunchConfig(**{**CLUSTER, "timeout_s": 300, "pending_timeout_s": 7200}),
            launcher=launcher,
        )
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


def _pod_status(admin_api, signal, status: dict, pod: str = "medgo-sft-abc123-master-0") -> None:
    """Write what the scheduler or kubelet would about ``pod`` (through its status subresource)."""
    core = client.CoreV1Api(admin_api)
    wait_until(
        lambda: core.list_namespaced_pod("medgo", field_selector=f"metadata.name={pod}").items,
        timeout_s=30,
        what=pod,
    )
    core.patch_namespaced_pod_status(pod, "medgo", {"status": status})
    signal.notify()


def _gone(admin_api, group=GROUP, version=VERSION, plural=PLURAL) -> bool:
    try:
        client.CustomObjectsApi(admin_api).get_namespaced_custom_object(
            group, version, "medgo", plural, "medgo-sft-abc123"
        )
    except client.exceptions.ApiException as exc:
        return exc.status == 404
    return False


def _in_background(fn):
    import threading

    box = {}

    def run():
        try:
            box["result"] = fn()
        except BaseException as exc:  # noqa: BLE001 - inspected by the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


UNSCHEDULABLE = {
    "phase": "Pending",
    "conditions": [
        {
            "type": "PodScheduled",
            "status": "False",
            "reason": "Unschedulable",
            "message": "0/4 nodes are available: 4 Insufficient nvidia.com/gpu.",
            "lastTransitionTime": "2026-12-01T00:00:00Z",
        }
    ],
}
OOM = {
    "phase": "Running",
    "containerStatuses": [
        {
            "name": "pytorch",
            "ready": False,
            "restartCount": 1,
            "image": "ghcr.io/medgo/medgo-trainer:0.1.0",
            "imageID": "",
            "state": {"waiting": {"reason": "CrashLoopBackOff"}},
            "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
        }
    ],
}


@pytest.mark.parametrize(
    "status, error",
    [
        (UNSCHEDULABLE, r"Unschedulable: pod medgo-sft-abc123-master-0: 0/4 nodes are available"),
        (OOM, r"OOMKilled: pod medgo-sft-abc123-master-0 container pytorch .*memory limit \(110Gi\)"),
    ],
    ids=["unschedulable", "oom-killed"],
)
def test_a_pod_that_cannot_recover_fails_the_step_fast_and_deletes_the_job(
    launcher, admin_api, training_operator, change_signal, status, error
):
    training_operator([None])  # the operator would keep the job Running (or Pending) for hours
    thread, box = _in_background(lambda: launch(CONFIG, LaunchConfig(**CLUSTER), launcher=launcher))
    _pod_status(admin_api, change_signal, status)
    thread.join(timeout=60)
    assert isinstance(box.get("error"), MedgoError), box
    assert re.search(error + r".*the job was deleted", str(box["error"]), re.S), box["error"]
    wait_until(lambda: _gone(admin_api), timeout_s=30, what="job deleted")


def test_a_cancelled_step_deletes_its_job(pipeline_api, admin_api, training_operator, change_signal):
    """KFP cancels a run by terminating the step (SIGTERM → KeyboardInterrupt in the wait)."""
    training_operator([None])
    calls = []

    def sleep(seconds):
        calls.append(seconds)
        if _job_running(admin_api):
            raise KeyboardInterrupt("SIGTERM")
        change_signal.sleep(seconds)

    launcher = PyTorchJobLauncher(
        client.CustomObjectsApi(pipeline_api),
        client.CoreV1Api(pipeline_api),
        poller=Poller(time.monotonic, sleep),
        watch_timeout_s=1,
        poll_s=5,  # a 1 s watch, then the poller's sleep: where the SIGTERM lands
    )
    with pytest.raises(KeyboardInterrupt):
        launch(CONFIG, LaunchConfig(**CLUSTER), launcher=launcher)
    wait_until(lambda: _gone(admin_api), timeout_s=30, what="job deleted")


def _job_running(admin_api) -> bool:
    try:
        return bool(condition(job(admin_api), "Running"))
    except client.exceptions.ApiException:
        return False


def test_restarted_pods_are_waited_out_and_resume(launcher, admin_api, training_operator, change_signal):
    """The operator restarts a failed pod (within backoffLimit); its trainer resumes from the checkpoint PVC
    (the same command and checkpoint_uri). The launcher follows the job through Restarting to Succeeded."""
    training_operator([None])
    thread, box = _in_background(lambda: launch(CONFIG, LaunchConfig(**CLUSTER), launcher=launcher))
    crashed = {
        **OOM,
        "containerStatuses": [
            {**OOM["containerStatuses"][0], "lastState": {"terminated": {"exitCode": 1, "reason": "Error"}}}
        ],
    }
    _pod_status(admin_api, change_signal, crashed)  # restartCount 1 < backoffLimit 3: not a failure
    custom = client.CustomObjectsApi(admin_api)
    wait_until(lambda: _job_running(admin_api), timeout_s=30, what="job Running")
    for types in (("Created", "Restarting"), ("Created", "Running"), ("Created", "Succeeded")):
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, "medgo", PLURAL, "medgo-sft-abc123",
            {"status": {"conditions": [{"type": t, "status": "True", "reason": t, "message": t,
                                        "lastUpdateTime": "2026-12-01T00:00:00Z",
                                        "lastTransitionTime": "2026-12-01T00:00:00Z"} for t in types]}},
        )  # fmt: skip
        change_signal.notify()
    thread.join(timeout=60)
    assert "error" not in box, box.get("error")
    (container,) = job(admin_api)["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]["containers"]
    args = parse_args(container["command"][3:])
    assert load_config(TrainConfig, args.config, args.overrides).checkpoint_uri == RAN.checkpoint_uri


def test_trainjob_backend_submits_a_trainer_v2_job_and_follows_it(
    pipeline_api, admin_api, trainer_v2, change_signal
):
    sim = trainer_v2([{"type": "Failed", "reason": "JobSetFailed", "message": "node-0 exited 1"}, {"type": "Complete"}],
                     master_log="error: preference data not found\n")  # fmt: skip
    launcher = TrainJobLauncher(
        client.CustomObjectsApi(pipeline_api),
        client.CoreV1Api(pipeline_api),
        poller=change_signal.poller(),
        watch_timeout_s=5,
        poll_s=1,
    )
    where = LaunchConfig(**{**CLUSTER, "backend": "trainjob"})
    with pytest.raises(MedgoError, match=r"(?s)JobSetFailed: node-0 exited 1.*preference data not found"):
        launch(CONFIG, where, launcher=launcher)
    launch(CONFIG, where, launcher=launcher)  # the retry replaces the failed TrainJob
    assert len(sim.attempts["medgo-sft-abc123"]) == 2
    obj = client.CustomObjectsApi(admin_api).get_namespaced_custom_object(
        trainjob.GROUP, trainjob.VERSION, "medgo", trainjob.PLURAL, "medgo-sft-abc123"
    )
    assert obj["status"]["conditions"][-1]["type"] == "Complete"
    spec = obj["spec"]
    assert spec["runtimeRef"]["name"] == "torch-distributed" and spec["trainer"]["numNodes"] == 8
    assert spec["trainer"]["resourcesPerNode"]["limits"]["nvidia.com/gpu"] == "8"
    assert {v["name"] for v in spec["podSpecOverrides"][0]["volumes"]} == {
        "dshm",
        "medgo-data",
        "medgo-checkpoints",
    }
    args = parse_args(spec["trainer"]["command"][3:])
    assert load_config(TrainConfig, args.config, args.overrides) == RAN


def test_a_trainjob_pod_that_cannot_be_scheduled_fails_fast(
    pipeline_api, admin_api, trainer_v2, change_signal
):
    trainer_v2([None])
    launcher = TrainJobLauncher(
        client.CustomObjectsApi(pipeline_api), client.CoreV1Api(pipeline_api),
        poller=change_signal.poller(), watch_timeout_s=5, poll_s=1,
    )  # fmt: skip
    where = LaunchConfig(**{**CLUSTER, "backend": "trainjob"})
    thread, box = _in_background(lambda: launch(CONFIG, where, launcher=launcher))
    _pod_status(admin_api, change_signal, UNSCHEDULABLE, pod="medgo-sft-abc123-node-0-0")
    thread.join(timeout=60)
    assert isinstance(box.get("error"), MedgoError) and "Unschedulable" in str(box["error"]), box
    wait_until(
        lambda: _gone(admin_api, trainjob.GROUP, trainjob.VERSION, trainjob.PLURAL),
        timeout_s=30,
        what="deleted",
    )
