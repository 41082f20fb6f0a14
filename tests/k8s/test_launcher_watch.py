"""The launcher's wait loop on the in-memory stand-in (tests/k8s/conftest.py), for what a healthy API server
does not do on demand: a watch dropped mid-stream, a resourceVersion compacted away (410 Gone), 503s for
minutes, and pod states the scheduler and kubelet write (Unschedulable, image pull back-off, OOMKilled, crash
loops, Pending past a deadline), all on a fake clock. The same paths run against the real API server in
test_pytorchjob.py and test_train_launch.py.
"""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException

from medgo.k8s._common import Poller
from medgo.k8s.pytorchjob import (
    GROUP,
    JOB_NAME_LABEL,
    PLURAL,
    REPLICA_TYPE_LABEL,
    VERSION,
    ApiLost,
    PyTorchJobFailed,
    PyTorchJobLauncher,
    build_pytorchjob,
)

IMAGE = "ghcr.io/medgo/medgo-trainer:0.1.0"


def small_job(**overrides):
    params = dict(
        name="medgo-sft",
        namespace="medgo",
        image=IMAGE,
        command=["python", "-m", "medgo.train.node", "--stage", "sft"],
        nnodes=1,
        nproc_per_node=2,
    )
    params.update(overrides)
    return build_pytorchjob(**params)


@pytest.fixture
def launcher(custom_api, core_api, fake_clock):
    return PyTorchJobLauncher(
        custom_api, core_api, poller=Poller(clock=fake_clock.clock, sleep=fake_clock.sleep)
    )


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
