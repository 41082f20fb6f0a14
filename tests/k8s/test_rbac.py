"""The pipeline's Role grants exactly the API calls medgo's launcher and deployer make, proven by a real
API server with RBAC.

``run_cluster_paths`` drives every cluster path of the pipeline as ``system:serviceaccount:medgo:medgo-pipeline``:
a training launch that fails (reason and master log in the error) and its retry that replaces the failed
job; a first deployment whose smoke test fails, then a canary rollout that fails and is rolled back. The training operator and KServe's controller are simulated through the same server (status
writes via the status subresource); the kubelet serving the log is a small HTTPS server. The API
server's audit log records each request as the authorizer saw it (verb, API group, resource, subresource)
with its decision.

The Role is read from ``kubectl kustomize manifests/base``, so the tests follow it: a rule added without
code that uses it, or a call added without a rule, fails ``test_role_is_exactly_what_the_code_calls``, and
each verb of each rule gets its own ``test_each_granted_verb_is_needed`` case. A new cluster path belongs in
``run_cluster_paths``, together with the rule it needs (the TrainJob backend and the launcher's list + watch are in).
"""

from __future__ import annotations

import copy
import shutil

import pytest
from kubernetes import client

from medgo.config import DeployConfig, LaunchConfig, TrainConfig
from medgo.deploy import deploy_model
from medgo.errors import MedgoError
from medgo.k8s.inference_service import InferenceServiceDeployer
from medgo.k8s.pytorchjob import PyTorchJobLauncher
from medgo.k8s.trainjob import TrainJobLauncher
from medgo.train.launch import launch
from tests.k8s.apiserver.cluster import NAMESPACE, PIPELINE_GROUPS, PIPELINE_USER, render_base, wait_until

Grant = tuple[str, str, str]  # (apiGroup, resource[/subresource], verb)


def pipeline_role() -> dict:
    (role,) = [o for o in render_base() if o["kind"] == "Role" and o["metadata"]["name"] == "medgo-pipeline"]
    return role


def grants(role: dict) -> set[Grant]:
    return {
        (group, resource, verb)
        for rule in role["rules"]
        for group in rule["apiGroups"]
        for resource in rule["resources"]
        for verb in rule["verbs"]
    }


def requested(events: list[dict]) -> set[Grant]:
    """Each audited request as the RBAC check it needed."""
    out = set()
    for e in events:
        ref = e.get("objectRef") or {}
        resource = ref["resource"] + (f"/{ref['subresource']}" if ref.get("subresource") else "")
        out.add((ref.get("apiGroup", ""), resource, e["verb"]))
    return out


def forbidden(events: list[dict]) -> set[Grant]:
    return requested(
        [e for e in events if (e.get("annotations") or {}).get("authorization.k8s.io/decision") != "allow"]
    )


def _grant_params() -> list:
    if shutil.which("kubectl") is None:
        return []
    return [pytest.param(g, id="/".join(x or "core" for x in g)) for g in sorted(grants(pipeline_role()))]


def run_cluster_paths(
    pipeline_api, signal, training_operator, trainer_v2, kserve_controller, tmp_path, dead_url
) -> None:
    """Every cluster path of the pipeline, each step asserting its expected outcome."""
    custom, core = client.CustomObjectsApi(pipeline_api), client.CoreV1Api(pipeline_api)
    training_operator(
        [
            {"type": "Failed", "reason": "PyTorchJobFailed", "message": "master-0 exited with code 1"},
            {"type": "Succeeded"},
        ],
        master_log="step 3 loss nan\nerror: loss diverged\n",
    )
    cfg = TrainConfig(stage="sft", model_uri="s3://m/pt", data_uri="s3://d/sft", output_uri="s3://o/sft")
    where = LaunchConfig(
        backend="pytorchjob",
        image="ghcr.io/medgo/medgo-trainer:0.1.0",
        job_name="medgo-sft-1",
        timeout_s=60,
        cpu="4",
        memory="16Gi",
        shm_size="4Gi",
    )
    launcher = PyTorchJobLauncher(custom, core, poller=signal.poller(), watch_timeout_s=5, poll_s=1)
    with pytest.raises(MedgoError, match="(?s)PyTorchJobFailed.*error: loss diverged"):
        launch(cfg, where, launcher=launcher)
    launch(cfg, where, launcher=launcher)  # the retry replaces the failed job and succeeds

    # The same on Kubeflow Trainer v2 (train_backend=trainjob).
    trainer_v2(
        [{"type": "Failed", "reason": "JobSetFailed", "message": "node-0 exited 1"}, {"type": "Complete"}],
        master_log="error: loss diverged\n",
    )
    on_trainer = TrainJobLauncher(custom, core, poller=signal.poller(), watch_timeout_s=5, poll_s=1)
    with pytest.raises(MedgoError, match="(?s)JobSetFailed.*error: loss diverged"):
        launch(cfg, where.model_copy(update={"backend": "trainjob"}), launcher=on_trainer)
    launch(cfg, where.model_copy(update={"backend": "trainjob"}), launcher=on_trainer)

    kserve_controller(dead_url)
    deployer = InferenceServiceDeployer(custom, poller=signal.poller())
    config = DeployConfig(target="kserve", ready_timeout_s=30)
    with pytest.raises(MedgoError, match="first rollout of medgo/medgo failed"):
        deploy_model(
            model_path="unused",
            model_uri="s3://m/v1",
            config=config,
            record_dir=tmp_path / "r1",
            deployer=deployer,
        )
    record = deploy_model(
        model_path="unused",
        model_uri="s3://m/v2",
        config=config,
        record_dir=tmp_path / "r2",
        deployer=deployer,
    )
    assert record["decision"] == "rolled-back"


@pytest.fixture
def dead_url():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def test_role_is_exactly_what_the_code_calls(
    kube, pipeline_api, change_signal, training_operator, trainer_v2, kserve_controller, tmp_path, dead_url
):
    mark = kube.audit_offset()
    run_cluster_paths(
        pipeline_api, change_signal, training_operator, trainer_v2, kserve_controller, tmp_path, dead_url
    )
    events = kube.audit_events(mark)
    assert forbidden(events) == set(), "the Role refused calls the pipeline makes"
    role = grants(pipeline_role())
    used = requested(events)
    assert used - role == set(), "calls the Role does not grant"
    assert role - used == set(), "the Role grants more than the code uses"


def _allowed(admin_api, grant: Grant) -> bool:
    group, resource, verb = grant
    resource, _, subresource = resource.partition("/")
    review = client.AuthorizationV1Api(admin_api).create_subject_access_review(
        {
            "spec": {
                "user": PIPELINE_USER,
                "groups": list(PIPELINE_GROUPS),
                "resourceAttributes": {
                    "namespace": NAMESPACE,
                    "group": group,
                    "resource": resource,
                    "subresource": subresource,
                    "verb": verb,
                },
            }
        }
    )
    return review.status.allowed


@pytest.mark.parametrize("grant", _grant_params())
def test_each_granted_verb_is_needed(
    grant,
    kube,
    admin_api,
    pipeline_api,
    change_signal,
    training_operator,
    trainer_v2,
    kserve_controller,
    tmp_path,
    dead_url,
):
    """Without this one verb the cluster paths fail, and the server refused exactly that call (403)."""
    rbac = client.RbacAuthorizationV1Api(admin_api)
    original = rbac.read_namespaced_role("medgo-pipeline", NAMESPACE)
    role = copy.deepcopy(pipeline_role())
    group, resource, verb = grant
    for rule in role["rules"]:
        if group in rule["apiGroups"] and resource in rule["resources"]:
            rule["verbs"] = [v for v in rule["verbs"] if v != verb]
    role["rules"] = [r for r in role["rules"] if r["verbs"]]
    role["metadata"] = {
        "name": "medgo-pipeline",
        "namespace": NAMESPACE,
        "resourceVersion": original.metadata.resource_version,
    }
    rbac.replace_namespaced_role("medgo-pipeline", NAMESPACE, role)
    try:
        wait_until(lambda: not _allowed(admin_api, grant), timeout_s=30, what=f"{grant} revoked")
        mark = kube.audit_offset()
        with pytest.raises((MedgoError, client.exceptions.ApiException, AssertionError)):
            run_cluster_paths(
                pipeline_api,
                change_signal,
                training_operator,
                trainer_v2,
                kserve_controller,
                tmp_path,
                dead_url,
            )
        events = kube.audit_events(mark)
        assert forbidden(events) == {grant}
        assert any(e["responseStatus"]["code"] == 403 for e in events)
    finally:
        restored = pipeline_role()
        restored["metadata"]["resourceVersion"] = rbac.read_namespaced_role(
            "medgo-pipeline", NAMESPACE
        ).metadata.resource_version
        rbac.replace_namespaced_role("medgo-pipeline", NAMESPACE, restored)
        wait_until(lambda: _allowed(admin_api, grant), timeout_s=30, what=f"{grant} restored")
