"""PyTorchJob builder and launcher.

The builder's output is validated offline against the published PyTorchJob CRD (training-operator v1.9,
vendored in tests/fixtures/crds) for single-node CPU and multi-node GPU shapes, and stored by a real
kube-apiserver, which must keep every field (no pruning).

The launcher runs against the real API server of tests/k8s/apiserver as the pipeline's ServiceAccount, so
RBAC checks every call. No training operator runs there: ``TrainingOperatorSim`` plays it, writing the
job's status (conditions, replicaStatuses) through the status subresource as watch events arrive, and a
small HTTPS server plays the kubelet that serves the master pod's log. Only the test that injects 503s
while polling uses the in-memory stand-in of conftest.py: a healthy server never answers that.
"""

from __future__ import annotations

import re

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from medgo.k8s._common import Poller, condition, contains
from medgo.k8s.pytorchjob import (
    CONTAINER_NAME,
    GROUP,
    JOB_NAME_LABEL,
    PLURAL,
    PORT,
    PORT_NAME,
    REPLICA_TYPE_LABEL,
    SPEC_HASH_ANNOTATION,
    VERSION,
    JobSpecConflict,
    PyTorchJobFailed,
    PyTorchJobLauncher,
    build_pytorchjob,
)
from tests.fixtures.crds import assert_valid_crd_object, crd_errors
from tests.k8s.apiserver.cluster import wait_until

IMAGE = "ghcr.io/medgo/medgo-trainer:0.1.0"
NODE = ["python", "-m", "medgo.train.node"]
GPU_TOLERATION = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
A100 = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "node-pool": "a100"}


def small_job(**overrides):
    params = dict(
        name="medgo-sft",
        namespace="medgo",
        image=IMAGE,
        command=NODE + ["--stage", "sft"],
        nnodes=1,
        nproc_per_node=2,
    )
    params.update(overrides)
    return build_pytorchjob(**params)


def replicas(job):
    return job["spec"]["pytorchReplicaSpecs"]


def pod_specs(job):
    return [spec["template"]["spec"] for spec in replicas(job).values()]


# -- builder ---------------------------------------------------------------------------------------------


def test_single_node_cpu_job_is_valid_and_has_no_workers():
    job = small_job()
    assert_valid_crd_object(job)
    assert list(replicas(job)) == ["Master"]
    assert replicas(job)["Master"]["replicas"] == 1
    assert job["spec"]["nprocPerNode"] == "2"  # the CRD types it as a string
    (container,) = pod_specs(job)[0]["containers"]
    assert "nvidia.com/gpu" not in container["resources"]["limits"]
    assert (
        container["resources"]["requests"]
        == container["resources"]["limits"]
        == {"cpu": "4", "memory": "16Gi"}
    )


def test_eight_node_gpu_job_is_valid_with_scheduling_and_storage():
    job = build_pytorchjob(
        name="medgo-pt",
        namespace="medgo",
        image=IMAGE,
        command=NODE + ["--stage", "pt", "--config", "/config/pt.yaml"],
        nnodes=8,
        nproc_per_node=8,
        gpus_per_node=8,
        cpu="96",
        memory="900Gi",
        shm_size="128Gi",
        node_selector=A100,
        tolerations=[GPU_TOLERATION],
        priority_class="medgo-training",
        pvc_mounts={"medgo-data": "/mnt/data", "medgo-checkpoints": "/mnt/checkpoints"},
        env={"NCCL_DEBUG": "WARN"},
        labels={"kueue.x-k8s.io/queue-name": "gpu"},
        active_deadline_seconds=7 * 24 * 3600,
        backoff_limit=3,
        config_map="medgo-train-config",
    )
    assert_valid_crd_object(job)
    assert replicas(job)["Master"]["replicas"] == 1
    assert replicas(job)["Worker"]["replicas"] == 7
    assert job["spec"]["nprocPerNode"] == "8"
    assert job["spec"]["runPolicy"] == {
        "cleanPodPolicy": "Running",
        "backoffLimit": 3,
        "activeDeadlineSeconds": 604800,
    }
    assert job["metadata"]["labels"]["kueue.x-k8s.io/queue-name"] == "gpu"
    for spec in pod_specs(job):
        assert spec["nodeSelector"] == A100
        assert spec["tolerations"] == [GPU_TOLERATION]
        assert spec["priorityClassName"] == "medgo-training"
        assert spec["serviceAccountName"] == "medgo-trainer"
        (container,) = spec["containers"]
        assert container["resources"]["limits"]["nvidia.com/gpu"] == "8"
        assert container["resources"]["requests"]["nvidia.com/gpu"] == "8"
        mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
        assert mounts == {
            "/dev/shm": "dshm",
            "/mnt/data": "medgo-data",
            "/mnt/checkpoints": "medgo-checkpoints",
            "/config": "train-config",
        }
        volumes = {v["name"]: v for v in spec["volumes"]}
        assert volumes["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "128Gi"}
        assert volumes["medgo-data"]["persistentVolumeClaim"] == {"claimName": "medgo-data"}
        assert volumes["train-config"]["configMap"] == {"name": "medgo-train-config"}
        assert {"name": "NCCL_DEBUG", "value": "WARN"} in container["env"]


def test_container_follows_the_operator_contract():
    job = small_job(nnodes=2, command=NODE + ["--stage", "dpo", "--config", "/config/dpo.yaml"])
    for spec in pod_specs(job):
        (container,) = spec["containers"]
        assert container["name"] == CONTAINER_NAME == "pytorch"
        assert container["ports"] == [{"name": PORT_NAME, "containerPort": PORT, "protocol": "TCP"}]
        assert PORT_NAME == "pytorchjob-port" and PORT == 23456
        assert container["command"] == [
            "python",
            "-m",
            "medgo.train.node",
            "--stage",
            "dpo",
            "--config",
            "/config/dpo.yaml",
        ]
        assert container["envFrom"] == [{"secretRef": {"name": "medgo-s3"}}]


def test_pods_are_locked_down():
    for spec in pod_specs(small_job(nnodes=3, gpus_per_node=2)):
        assert spec["automountServiceAccountToken"] is False
        assert spec["securityContext"]["runAsNonRoot"] is True
        assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        (container,) = spec["containers"]
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}


def test_optional_parts_are_omitted_when_not_requested():
    job = small_job(s3_secret=None)
    spec = pod_specs(job)[0]
    for key in ("nodeSelector", "tolerations", "priorityClassName"):
        assert key not in spec
    assert "envFrom" not in spec["containers"][0]
    assert "env" not in spec["containers"][0]  # the operator adds its own variables
    assert "activeDeadlineSeconds" not in job["spec"]["runPolicy"]
    assert [v["name"] for v in spec["volumes"]] == ["dshm"]


def test_builder_does_not_alias_caller_data():
    tolerations = [dict(GPU_TOLERATION)]
    master, worker = pod_specs(small_job(tolerations=tolerations, gpus_per_node=2, nnodes=2))
    master["tolerations"][0]["effect"] = "NoExecute"
    assert tolerations[0]["effect"] == "NoSchedule"
    assert worker["tolerations"][0]["effect"] == "NoSchedule"


def test_strict_schema_catches_a_misspelt_field():
    job = small_job()
    job["spec"]["runPolicy"]["cleanPodPolicyy"] = "All"
    assert any("cleanPodPolicyy" in e for e in crd_errors(job))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"name": "Medgo_SFT"}, "job name 'Medgo_SFT' must be a DNS-1035 label"),
        ({"name": "1st-run"}, "starting with a letter"),
        ({"name": "x" * 60, "nnodes": 8}, "at most 54 characters"),
        ({"namespace": "Bad NS"}, "namespace 'Bad NS' must be a DNS-1123 label"),
        ({"nnodes": 0}, "nnodes must be between 1"),
        ({"nnodes": 2.0}, "nnodes must be an int"),
        ({"nproc_per_node": 0}, "nproc_per_node must be >= 1"),
        ({"gpus_per_node": 2, "nproc_per_node": 4}, "each training process needs its own GPU"),
        ({"gpus_per_node": -1}, "gpus_per_node must be >= 0"),
        ({"image": "ghcr.io/medgo/medgo-trainer"}, "has no tag or digest"),
        ({"image": "ghcr.io/medgo/medgo-trainer:latest"}, "mutable tag 'latest'"),
        ({"cpu": "four"}, "cpu 'four' is not a Kubernetes quantity"),
        ({"memory": "16GB"}, "memory '16GB' is not a Kubernetes quantity"),
        ({"command": "python -m medgo.train.node"}, "command must be a non-empty list of strings"),
        ({"command": []}, "command must be a non-empty list of strings"),
        ({"env": {"MASTER_ADDR": "x"}}, "MASTER_ADDR is set by the operator"),
        ({"env": {"1BAD": "x"}}, "not a valid C-like identifier"),
        ({"env": {"N": 1}}, "must be a string"),
        ({"pvc_mounts": {"medgo-data": "data"}}, "must be an absolute path"),
        ({"pvc_mounts": {"medgo-data": "/dev/shm"}}, "is already used"),
        ({"pvc_mounts": {"Medgo": "/mnt"}}, "PVC claim name 'Medgo'"),
        ({"backoff_limit": -1}, "backoff_limit must be >= 0"),
        ({"active_deadline_seconds": 0}, "active_deadline_seconds must be a positive int"),
        ({"labels": {"team": 1}}, "label keys and values must be strings"),
        ({"node_selector": {"node-pool": None}}, "label keys and values must be strings"),
        ({"tolerations": ["nvidia.com/gpu"]}, "tolerations must be a list of toleration dicts"),
    ],
)
def test_invalid_parameters_raise_value_error_naming_them(overrides, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        small_job(**overrides)


def test_digest_pinned_image_is_accepted():
    job = small_job(image="ghcr.io/medgo/medgo-trainer@sha256:" + "ab" * 32)
    assert pod_specs(job)[0]["containers"][0]["image"].endswith("ab" * 32)


# -- launcher, against the real API server ----------------------------------------------------------------


@pytest.fixture
def launcher(pipeline_api, change_signal):
    return PyTorchJobLauncher(
        client.CustomObjectsApi(pipeline_api),
        client.CoreV1Api(pipeline_api),
        poller=change_signal.poller(),
        watch_timeout_s=5,
        poll_s=1,
    )


def stored_job(admin_api, name: str = "medgo-sft") -> dict:
    return client.CustomObjectsApi(admin_api).get_namespaced_custom_object(
        GROUP, VERSION, "medgo", PLURAL, name
    )


def test_server_stores_built_jobs_without_pruning_a_field(admin_api):
    custom = client.CustomObjectsApi(admin_api)
    for job in (
        small_job(),
        small_job(
            name="medgo-pt",
            nnodes=8,
            nproc_per_node=8,
            gpus_per_node=8,
            node_selector=A100,
            tolerations=[GPU_TOLERATION],
            priority_class="medgo-training",
            pvc_mounts={"medgo-data": "/mnt/data"},
            config_map="medgo-train",
            env={"NCCL_DEBUG": "WARN"},
            active_deadline_seconds=86400,
        ),
    ):
        stored = custom.create_namespaced_custom_object(GROUP, VERSION, "medgo", PLURAL, job)
        assert contains(stored["spec"], job["spec"]), "the server pruned fields the builder set"
        assert stored["spec"]["runPolicy"]["suspend"] is False  # the CRD's default, applied by the server


def test_submit_creates_the_job_with_a_spec_hash(launcher, admin_api):
    job = small_job()
    assert launcher.submit(job) == "medgo-sft"
    stored = stored_job(admin_api)
    assert contains(stored["spec"], job["spec"])
    assert len(stored["metadata"]["annotations"][SPEC_HASH_ANNOTATION]) == 64
    assert "annotations" not in job["metadata"], "submit must not mutate the caller's dict"


def test_resubmitting_the_same_job_reuses_it(launcher, admin_api):
    launcher.submit(small_job())
    uid = stored_job(admin_api)["metadata"]["uid"]
    assert launcher.submit(small_job()) == "medgo-sft"  # the server answers 409; same spec hash: reused
    assert stored_job(admin_api)["metadata"]["uid"] == uid


def test_submitting_a_different_job_under_the_same_name_raises(launcher):
    launcher.submit(small_job())
    with pytest.raises(JobSpecConflict, match="already exists with a different spec"):
        launcher.submit(small_job(nnodes=2))


def test_existing_job_without_hash_is_compared_field_by_field(launcher, admin_api):
    # Created by hand (no spec-hash annotation); the server has added the CRD's defaults to its spec.
    client.CustomObjectsApi(admin_api).create_namespaced_custom_object(
        GROUP, VERSION, "medgo", PLURAL, small_job()
    )
    assert "suspend" in stored_job(admin_api)["spec"]["runPolicy"]
    assert launcher.submit(small_job()) == "medgo-sft"
    with pytest.raises(JobSpecConflict):
        launcher.submit(small_job(memory="32Gi"))


def test_submit_propagates_other_api_errors(launcher):
    with pytest.raises(ApiException) as info:  # the pipeline's Role covers namespace medgo only
        launcher.submit(small_job(namespace="default"))
    assert info.value.status == 403


def test_wait_returns_when_the_job_succeeds(launcher, training_operator):
    training_operator([{"type": "Succeeded"}])
    launcher.submit(small_job())
    job = launcher.wait("medgo-sft", "medgo", timeout_s=60)
    assert [c["type"] for c in job["status"]["conditions"]] == ["Created", "Running", "Succeeded"]
    assert job["status"]["replicaStatuses"]["Master"] == {"active": 0, "succeeded": 1}


def test_wait_raises_with_the_operators_reason_when_the_job_fails(launcher, training_operator):
    training_operator(
        [
            {
                "type": "Failed",
                "reason": "PyTorchJobFailed",
                "message": "PyTorchJob medgo-sft is failed because 1 Master replica(s) failed.",
            }
        ]
    )
    launcher.submit(small_job())
    with pytest.raises(PyTorchJobFailed, match="PyTorchJobFailed: PyTorchJob medgo-sft is failed") as info:
        launcher.wait("medgo-sft", "medgo", timeout_s=60)
    assert isinstance(info.value, RuntimeError)
    assert info.value.reason == "PyTorchJobFailed"


def test_wait_times_out_with_the_last_state(pipeline_api, admin_api, training_operator, fake_clock):
    training_operator([None])  # the job stays Running
    launcher = PyTorchJobLauncher(
        client.CustomObjectsApi(pipeline_api),
        client.CoreV1Api(pipeline_api),
        poller=Poller(clock=fake_clock.clock, sleep=fake_clock.sleep),
        watch_timeout_s=1,  # each watch holds 1 s of real time; the fake clock moves by the poll interval
    )
    launcher.submit(small_job())
    wait_until(lambda: condition(stored_job(admin_api), "Running"), timeout_s=10, what="job Running")
    with pytest.raises(TimeoutError, match=r"did not finish within 100s \(last state: Running\)"):
        launcher.wait("medgo-sft", "medgo", timeout_s=100, poll_s=30)
    assert fake_clock.sleeps == [30, 30, 30, 10]  # never sleeps past the deadline


def test_wait_retries_transient_errors(custom_api, core_api, server, fake_clock):
    """In-memory stand-in: a healthy API server never answers 503 on demand."""
    launcher = PyTorchJobLauncher(
        custom_api, core_api, poller=Poller(clock=fake_clock.clock, sleep=fake_clock.sleep)
    )
    launcher.submit(small_job())
    path = "/apis/{group}/{version}/namespaces/{namespace}/{plural}"
    server.failures[("GET", path)] = [
        ApiException(status=503, reason="Unavailable"),
        ApiException(status=429, reason="TooManyRequests"),
    ]
    fake_clock.steps = [
        lambda: None,
        lambda: server.set_status(
            GROUP,
            VERSION,
            "medgo",
            PLURAL,
            "medgo-sft",
            {"conditions": [{"type": "Succeeded", "status": "True"}]},
        ),
    ]
    assert (
        launcher.wait("medgo-sft", "medgo", timeout_s=100)["status"]["conditions"][0]["type"] == "Succeeded"
    )
    assert fake_clock.sleeps[:2] == [1.0, 2.0]  # backing off


def test_logs_come_from_the_master_pod(launcher, admin_api, fake_kubelet):
    core = client.CoreV1Api(admin_api)
    labels = {JOB_NAME_LABEL: "medgo-sft"}
    for pod, replica_type, text in (
        ("medgo-sft-worker-0", "worker", "worker log\n"),
        ("medgo-sft-master-0", "master", "step 1 loss 2.0\nstep 2 loss 1.5\n"),
    ):
        core.create_namespaced_pod(
            "medgo",
            {
                "metadata": {"name": pod, "labels": {**labels, REPLICA_TYPE_LABEL: replica_type}},
                "spec": {
                    "nodeName": fake_kubelet.name,
                    "serviceAccountName": "medgo-trainer",
                    "automountServiceAccountToken": False,
                    "containers": [{"name": CONTAINER_NAME, "image": IMAGE}],
                },
            },
        )
        fake_kubelet.logs[("medgo", pod, CONTAINER_NAME)] = text
    assert launcher.logs("medgo-sft", "medgo") == "step 1 loss 2.0\nstep 2 loss 1.5\n"
    assert launcher.logs("medgo-sft", "medgo", tail_lines=1) == "step 2 loss 1.5\n"
    # The API server proxied both reads to the node's kubelet, for the master's pytorch container.
    assert fake_kubelet.requests[-2:] == [
        "/containerLogs/medgo/medgo-sft-master-0/pytorch",
        "/containerLogs/medgo/medgo-sft-master-0/pytorch?tailLines=1",
    ]


def test_logs_without_a_master_pod_raise_lookup_error(launcher):
    with pytest.raises(LookupError, match="no master pod found for PyTorchJob medgo/medgo-sft"):
        launcher.logs("medgo-sft", "medgo")


def test_delete_removes_the_job_and_tolerates_absence(launcher, admin_api):
    launcher.submit(small_job())
    assert launcher.delete("medgo-sft", "medgo") is True
    with pytest.raises(ApiException) as info:
        stored_job(admin_api)
    assert info.value.status == 404
    assert launcher.delete("medgo-sft", "medgo") is False
