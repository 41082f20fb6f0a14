"""PyTorchJob builder and launcher.

The builder's output is validated against the published PyTorchJob CRD (training-operator v1.9, vendored in
tests/fixtures/crds) for single-node CPU and multi-node GPU shapes. No API server can run in this sandbox for
this stage, so the launcher runs against the in-memory fake in conftest.py (real ``kubernetes.client`` API
classes over a dict-backed stand-in for the HTTP layer, answering 404/409 like the real server); a later issue
adds a real kube-apiserver.
"""

from __future__ import annotations

import re

import pytest
from kubernetes.client.exceptions import ApiException

from medgo.k8s._common import Poller
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
    ApiLost,
    JobSpecConflict,
    PyTorchJobFailed,
    PyTorchJobLauncher,
    build_pytorchjob,
)
from tests.fixtures.crds import assert_valid_crd_object, crd_errors

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


# -- launcher --------------------------------------------------------------------------------------------


@pytest.fixture
def launcher(custom_api, core_api, fake_clock):
    return PyTorchJobLauncher(
        custom_api, core_api, poller=Poller(clock=fake_clock.clock, sleep=fake_clock.sleep)
    )


def _default_like_the_operator(job: dict) -> None:
    """What training-operator's defaulting adds to a submitted job."""
    job["spec"]["runPolicy"].setdefault("suspend", False)
    for spec in job["spec"]["pytorchReplicaSpecs"].values():
        spec["template"]["spec"]["containers"][0].setdefault("terminationMessagePolicy", "File")


def test_submit_creates_the_job_with_a_spec_hash(launcher, server):
    job = small_job()
    assert launcher.submit(job) == "medgo-sft"
    stored = server.get(GROUP, VERSION, "medgo", PLURAL, "medgo-sft")
    assert stored["spec"] == job["spec"]
    assert len(stored["metadata"]["annotations"][SPEC_HASH_ANNOTATION]) == 64
    assert "annotations" not in job["metadata"], "submit must not mutate the caller's dict"


def test_resubmitting_the_same_job_reuses_it(launcher, server):
    server.defaulters[PLURAL] = _default_like_the_operator
    launcher.submit(small_job())
    assert launcher.submit(small_job()) == "medgo-sft"
    assert len(server.calls("POST")) == 2 and len(server.objects) == 1


def test_submitting_a_different_job_under_the_same_name_raises(launcher):
    launcher.submit(small_job())
    with pytest.raises(JobSpecConflict, match="already exists with a different spec"):
        launcher.submit(small_job(nnodes=2))


def test_existing_job_without_hash_is_compared_field_by_field(launcher, server, custom_api):
    server.defaulters[PLURAL] = _default_like_the_operator
    custom_api.create_namespaced_custom_object(GROUP, VERSION, "medgo", PLURAL, small_job())  # no annotation
    assert launcher.submit(small_job()) == "medgo-sft"
    with pytest.raises(JobSpecConflict):
        launcher.submit(small_job(memory="32Gi"))


def test_submit_propagates_other_api_errors(launcher, server):
    path = "/apis/{group}/{version}/namespaces/{namespace}/{plural}"
    server.failures[("POST", path)] = [ApiException(status=403, reason="Forbidden")]
    with pytest.raises(ApiException) as info:
        launcher.submit(small_job())
    assert info.value.status == 403


def _conditions(*types_true: str) -> dict:
    return {
        "conditions": [
            {"type": t, "status": "True", "reason": f"PyTorchJob{t}", "message": f"job is {t}"}
            for t in types_true
        ]
    }


def _status(server, *types):
    return lambda: server.set_status(GROUP, VERSION, "medgo", PLURAL, "medgo-sft", _conditions(*types))


def _watches(server):
    return [c for c in server.calls("GET") if c["query"].get("watch")]


def test_wait_follows_the_job_with_a_watch_until_it_succeeds(launcher, server, fake_clock):
    launcher.submit(small_job())
    fake_clock.steps = [
        _status(server, "Created"),
        _status(server, "Created", "Running"),
        _status(server, "Created", "Succeeded"),
    ]
    job = launcher.wait("medgo-sft", "medgo", timeout_s=3600)
    assert job["status"]["conditions"][-1]["type"] == "Succeeded"
    watches = _watches(server)
    assert {w["query"]["fieldSelector"] for w in watches} == {"metadata.name=medgo-sft"}
    versions = [int(w["query"]["resourceVersion"]) for w in watches]
    assert versions == sorted(versions) and len(set(versions)) == len(versions)  # each resumes where it left


def test_wait_raises_with_the_operators_reason_when_the_job_fails(launcher, server, fake_clock):
    launcher.submit(small_job())
    server.set_status(
        GROUP,
        VERSION,
        "medgo",
        PLURAL,
        "medgo-sft",
        {
            "conditions": [
                {"type": "Created", "status": "True"},
                {"type": "Running", "status": "False"},
                {
                    "type": "Failed",
                    "status": "True",
                    "reason": "PyTorchJobFailed",
                    "message": "PyTorchJob medgo-sft is failed because 1 Master replica(s) failed.",
                },
            ]
        },
    )
    with pytest.raises(PyTorchJobFailed, match="PyTorchJobFailed: PyTorchJob medgo-sft is failed") as info:
        launcher.wait("medgo-sft", "medgo", timeout_s=60)
    assert isinstance(info.value, RuntimeError)
    assert info.value.reason == "PyTorchJobFailed" and not info.value.fail_fast


def test_wait_times_out_with_the_last_state(launcher, server, fake_clock):
    launcher.submit(small_job())
    fake_clock.steps = [_status(server, "Created", "Running")]
    with pytest.raises(TimeoutError, match=r"did not finish within 100s \(last state: Running\)"):
        launcher.wait("medgo-sft", "medgo", timeout_s=100)
    assert sum(fake_clock.sleeps) == 100  # the watches never hold past the deadline


def test_a_dropped_watch_reconnects_from_the_last_resource_version(launcher, server, fake_clock):
    import urllib3

    launcher.submit(small_job())
    fake_clock.steps = [_status(server, "Created", "Running"), _status(server, "Created", "Succeeded")]
    server.watch_breaks = [urllib3.exceptions.ProtocolError("connection reset by peer")]
    assert (
        launcher.wait("medgo-sft", "medgo", timeout_s=3600)["status"]["conditions"][-1]["type"] == "Succeeded"
    )
    first, second = _watches(server)[:2]
    running_rv = server.events[1][0]  # ADDED, then the Running status
    assert int(second["query"]["resourceVersion"]) == running_rv > int(first["query"]["resourceVersion"])


def test_a_gone_resource_version_relists(launcher, server, fake_clock):
    launcher.submit(small_job())

    def compact_then_succeed():
        server.set_status(GROUP, VERSION, "medgo", PLURAL, "medgo-sft", _conditions("Created", "Running"))
        server.compact()  # the watch's resourceVersion is gone: the next watch gets 410

    fake_clock.steps = [compact_then_succeed, _status(server, "Created", "Succeeded")]
    server.watch_breaks = [urllib3_error()]
    assert launcher.wait("medgo-sft", "medgo", timeout_s=3600)
    lists = [c for c in server.calls("GET") if c["path"].endswith("{plural}") and not c["query"].get("watch")]
    assert len(lists) >= 2  # the first list, and the relist after 410 Gone


def urllib3_error():
    import urllib3

    return urllib3.exceptions.ProtocolError("connection broken")


def test_an_api_gone_for_good_is_reported(server, custom_api, core_api, fake_clock):
    launcher = PyTorchJobLauncher(
        custom_api, core_api, poller=Poller(fake_clock.clock, fake_clock.sleep), api_patience_s=120
    )
    launcher.submit(small_job())
    path = "/apis/{group}/{version}/namespaces/{namespace}/{plural}"
    server.failures[("GET", path)] = [ApiException(status=503, reason="Unavailable")] * 1000
    with pytest.raises(ApiLost, match="unreachable for 1[2-9][0-9]s"):
        launcher.wait("medgo-sft", "medgo", timeout_s=3600)


def test_transient_errors_are_retried_and_a_vanished_job_is_an_error(launcher, server, fake_clock):
    launcher.submit(small_job())
    path = "/apis/{group}/{version}/namespaces/{namespace}/{plural}"
    server.failures[("GET", path)] = [ApiException(status=503, reason="Unavailable")]
    fake_clock.steps = [
        lambda: server._delete_custom_item(
            {"group": GROUP, "version": VERSION, "namespace": "medgo", "plural": PLURAL, "name": "medgo-sft"},
            {},
            {},
            None,
        )
    ]
    with pytest.raises(RuntimeError, match="no longer exists"):
        launcher.wait("medgo-sft", "medgo", timeout_s=100)


MASTER = {JOB_NAME_LABEL: "medgo-sft", REPLICA_TYPE_LABEL: "master"}


def _waiting(reason, message="", restarts=0, last=None):
    status = {
        "name": "pytorch",
        "ready": False,
        "restartCount": restarts,
        "image": IMAGE,
        "imageID": "",
        "state": {"waiting": {"reason": reason, "message": message}},
    }
    if last:
        status["lastState"] = {"terminated": last}
    return {"phase": "Running" if restarts else "Pending", "containerStatuses": [status]}


@pytest.mark.parametrize(
    "status, reason, message",
    [
        (
            {
                "phase": "Pending",
                "conditions": [
                    {
                        "type": "PodScheduled",
                        "status": "False",
                        "reason": "Unschedulable",
                        "message": "0/12 nodes are available: 12 Insufficient nvidia.com/gpu.",
                    }
                ],
            },
            "Unschedulable",
            "0/12 nodes are available: 12 Insufficient nvidia.com/gpu",
        ),
        (
            _waiting("ImagePullBackOff", "Back-off pulling image"),
            "ImagePullBackOff",
            "Back-off pulling image",
        ),
        (_waiting("ErrImagePull", "manifest unknown"), "ErrImagePull", "manifest unknown"),
        (
            {
                "phase": "Running",
                "containerStatuses": [
                    {
                        "name": "pytorch",
                        "ready": False,
                        "restartCount": 1,
                        "image": IMAGE,
                        "imageID": "",
                        "state": {"running": {}},
                        "lastState": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
                    }
                ],
            },
            "OOMKilled",
            r"exceeding its memory limit \(16Gi\)",
        ),
        (
            _waiting("CrashLoopBackOff", restarts=3, last={"exitCode": 1, "reason": "Error"}),
            "CrashLoopBackOff",
            "restarted 3 times; last exit code 1",
        ),
    ],
)
def test_a_pod_that_cannot_recover_fails_the_wait_with_its_reason(launcher, server, status, reason, message):
    launcher.submit(small_job())
    server.add_pod("medgo", "medgo-sft-master-0", MASTER, status=status, memory_limit="16Gi")
    with pytest.raises(PyTorchJobFailed, match=f"{reason}: .*{message}") as info:
        launcher.wait("medgo-sft", "medgo", timeout_s=3600, restart_budget=3)
    assert info.value.fail_fast and info.value.reason == reason


def test_restarts_within_the_budget_are_waited_out(launcher, server, fake_clock):
    launcher.submit(small_job())
    crash = _waiting("CrashLoopBackOff", restarts=1, last={"exitCode": 1, "reason": "Error"})
    server.add_pod("medgo", "medgo-sft-master-0", MASTER, status=crash)
    fake_clock.steps = [_status(server, "Created", "Restarting"), _status(server, "Created", "Succeeded")]
    assert launcher.wait("medgo-sft", "medgo", timeout_s=3600, restart_budget=3)


def test_a_pod_pending_past_the_deadline_fails_the_wait(launcher, server, fake_clock):
    launcher.submit(small_job())
    server.add_pod(
        "medgo",
        "medgo-sft-master-0",
        MASTER,
        status={"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "True"}]},
    )
    with pytest.raises(
        PyTorchJobFailed, match=r"PendingTooLong: pod medgo-sft-master-0 still Pending after 300s"
    ):
        launcher.wait("medgo-sft", "medgo", timeout_s=3600, pending_timeout_s=300)
    assert 300 < fake_clock.now < 400


def test_logs_come_from_the_master_pod(launcher, server):
    labels = {JOB_NAME_LABEL: "medgo-sft"}
    server.add_pod(
        "medgo",
        "medgo-sft-worker-0",
        {**labels, REPLICA_TYPE_LABEL: "worker"},
        logs={"pytorch": "worker log\n"},
    )
    server.add_pod(
        "medgo",
        "medgo-sft-master-0",
        {**labels, REPLICA_TYPE_LABEL: "master"},
        logs={"pytorch": "step 1 loss 2.0\nstep 2 loss 1.5\n"},
    )
    assert launcher.logs("medgo-sft", "medgo") == "step 1 loss 2.0\nstep 2 loss 1.5\n"
    assert launcher.logs("medgo-sft", "medgo", tail_lines=1) == "step 2 loss 1.5\n"
    selector = server.calls("GET")[0]["query"]["labelSelector"]
    assert selector == "training.kubeflow.org/job-name=medgo-sft,training.kubeflow.org/replica-type=master"


def test_logs_without_a_master_pod_raise_lookup_error(launcher):
    with pytest.raises(LookupError, match="no master pod found for PyTorchJob medgo/medgo-sft"):
        launcher.logs("medgo-sft", "medgo")


def test_delete_removes_the_job_and_tolerates_absence(launcher, server):
    launcher.submit(small_job())
    assert launcher.delete("medgo-sft", "medgo") is True
    assert server.objects == {}
    assert server.calls("DELETE")[0]["query"] == {"propagationPolicy": "Background"}
    assert launcher.delete("medgo-sft", "medgo") is False
