"""The TrainJob builder against the Kubeflow Trainer API of each release it targets.

Offline: each ``trainer_api`` shape validates (strictly, unknown fields refused) against the vendored CRD of
its own release and is refused by the others', so a field sent to the wrong release fails here. On the real
API server of tests/k8s/apiserver (current CRD installed): the default shape is kept whole, and the
pre-v2.2 shapes lose their pod settings, which is what a current Trainer cluster would do with them.
"""

from __future__ import annotations

import pytest

from medgo.errors import InvalidSpec
from medgo.k8s.names import GPU_TOLERATION, S3_SECRET, S3_SECRET_KEYS, TRAINER_SERVICE_ACCOUNT
from medgo.k8s.trainjob import PATCH_MANAGER, build_trainjob
from tests.fixtures.crds import crd_errors
from tests.k8s.apiserver.cluster import dropped_fields
from tests.k8s.apiserver.controllers import trainjob_pod_patch

JOB = dict(
    name="medgo-sft-abc123",
    namespace="medgo",
    image="ghcr.io/medgo/medgo-trainer:0.1.0",
    command=["python", "-m", "medgo.train.node", "--stage", "sft"],
    nnodes=8,
    nproc_per_node=8,
    gpus_per_node=8,
    cpu="34",
    memory="110Gi",
    shm_size="16Gi",
    node_selector={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"},
    tolerations=[GPU_TOLERATION],
    pvc_mounts={"medgo-data": "/mnt/medgo-data", "medgo-checkpoints": "/mnt/medgo-checkpoints"},
    env={"MEDGO_LOG_LEVEL": "INFO"},
)
#: trainer_api -> (the spec field carrying the pod settings, the vendored CRD release it must match).
SHAPES = {"v2.2+": ("runtimePatches", None), "v2.1": ("podTemplateOverrides", "v2.1"), "v2.0": ("podSpecOverrides", "v2.0")}  # fmt: skip


@pytest.mark.parametrize("trainer_api", SHAPES)
def test_each_shape_matches_its_releases_crd_and_no_other(trainer_api):
    field, release = SHAPES[trainer_api]
    job = build_trainjob(**JOB, trainer_api=trainer_api)
    assert crd_errors(job, release=release) == []
    assert set(job["spec"]) == {"runtimeRef", "trainer", field}
    for _, other_release in SHAPES.values():
        if other_release != release:
            assert f"'{field}' was unexpected" in "\n".join(crd_errors(job, release=other_release))


@pytest.mark.parametrize("trainer_api", SHAPES)
def test_pod_settings_reach_the_node_job(trainer_api):
    patch = trainjob_pod_patch(build_trainjob(**JOB, trainer_api=trainer_api))
    assert patch["serviceAccountName"] == TRAINER_SERVICE_ACCOUNT
    assert patch["nodeSelector"] == JOB["node_selector"] and patch["tolerations"] == [GPU_TOLERATION]
    claims = {v["name"]: v for v in patch["volumes"]}
    assert claims["dshm"]["emptyDir"] == {"medium": "Memory", "sizeLimit": "16Gi"}
    assert claims["medgo-checkpoints"]["persistentVolumeClaim"]["claimName"] == "medgo-checkpoints"
    (container,) = patch["containers"]
    assert container["name"] == "node" and "env" not in container and "envFrom" not in container
    assert {m["name"]: m["mountPath"] for m in container["volumeMounts"]} == {
        "dshm": "/dev/shm",
        "medgo-data": "/mnt/medgo-data",
        "medgo-checkpoints": "/mnt/medgo-checkpoints",
    }


def test_current_trainer_gets_one_patch_owned_by_medgo_on_the_node_job():
    (patch,) = build_trainjob(**JOB)["spec"]["runtimePatches"]
    assert patch["manager"] == PATCH_MANAGER and "/" in PATCH_MANAGER  # Trainer wants a domain-prefixed path
    (replicated,) = patch["trainingRuntimeSpec"]["template"]["spec"]["replicatedJobs"]
    assert replicated["name"] == "node"


@pytest.mark.parametrize("trainer_api", SHAPES)
def test_s3_secret_and_env_go_through_the_trainer_in_every_release(trainer_api):
    env = build_trainjob(**JOB, trainer_api=trainer_api)["spec"]["trainer"]["env"]
    assert env[0] == {"name": "MEDGO_LOG_LEVEL", "value": "INFO"}
    refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in env[1:]}
    assert set(refs) == set(S3_SECRET_KEYS)
    assert all(r["name"] == S3_SECRET and r["key"] == key for key, r in refs.items())
    assert not refs["AWS_ACCESS_KEY_ID"]["optional"] and refs["AWS_ENDPOINT_URL"]["optional"]
    no_secret = build_trainjob(**{**JOB, "env": {}}, s3_secret=None, trainer_api=trainer_api)
    assert "env" not in no_secret["spec"]["trainer"]


def test_env_may_not_shadow_the_s3_secret_or_the_trainers_variables():
    with pytest.raises(InvalidSpec, match="AWS_SECRET_ACCESS_KEY"):
        build_trainjob(**{**JOB, "env": {"AWS_SECRET_ACCESS_KEY": "x"}})
    with pytest.raises(InvalidSpec, match="PET_NPROC_PER_NODE"):
        build_trainjob(**{**JOB, "env": {"PET_NPROC_PER_NODE": "2"}})
    job = build_trainjob(**{**JOB, "env": {"AWS_SECRET_ACCESS_KEY": "x"}}, s3_secret=None)
    assert job["spec"]["trainer"]["env"] == [{"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}]


@pytest.mark.parametrize(("trainer_api", "sent"), [("v2.2+", None), ("v2.1", "auto"), ("v2.0", "auto")])
def test_auto_processes_per_node_as_each_release_allows(trainer_api, sent):
    """v2.2 made ``numProcPerNode`` an integer whose torch default is ``auto``; earlier releases take it."""
    field, release = SHAPES[trainer_api]
    auto = build_trainjob(**{**JOB, "nproc_per_node": "auto"}, trainer_api=trainer_api)
    assert auto["spec"]["trainer"].get("numProcPerNode") == sent
    assert crd_errors(auto, release=release) == []
    fixed = build_trainjob(**{**JOB, "nproc_per_node": 4}, trainer_api=trainer_api)
    assert fixed["spec"]["trainer"]["numProcPerNode"] == 4


def test_current_crd_refuses_auto_as_an_integer():
    """The check above could fail: sent to v2.2+, ``auto`` is a schema error."""
    job = build_trainjob(**JOB)
    job["spec"]["trainer"]["numProcPerNode"] = "auto"
    assert any("numProcPerNode" in e for e in crd_errors(job))


def test_unknown_trainer_api_is_refused():
    with pytest.raises(InvalidSpec, match="trainer_api"):
        build_trainjob(**JOB, trainer_api="v3")


def test_reader_of_the_simulated_trainer_refuses_two_shapes_at_once():
    job = build_trainjob(**JOB)
    job["spec"]["podSpecOverrides"] = build_trainjob(**JOB, trainer_api="v2.0")["spec"]["podSpecOverrides"]
    with pytest.raises(AssertionError, match="reads one of them"):
        trainjob_pod_patch(job)


def test_api_server_keeps_the_current_shape_whole_and_drops_the_legacy_ones(kube):
    """The 1.20 server prunes fields its CRD (Trainer v2.3) lacks instead of refusing them, as a current
    cluster with field validation ``Ignore`` would: the legacy shapes' pod settings silently vanish."""
    jobs = {api: build_trainjob(**{**JOB, "name": f"shape-{api.replace('.', '').rstrip('+')}"}, trainer_api=api)
            for api in SHAPES}  # fmt: skip
    stored = {
        o["metadata"]["name"]: o for o in kube.apply_dry_run(list(jobs.values()), kubectl_validation=False)
    }
    current = jobs["v2.2+"]
    assert dropped_fields(current, stored[current["metadata"]["name"]]) == []
    assert stored[current["metadata"]["name"]]["spec"]["trainer"]["numProcPerNode"] == 8
    for api in ("v2.1", "v2.0"):
        name, field = jobs[api]["metadata"]["name"], SHAPES[api][0]
        assert dropped_fields(jobs[api], stored[name]) == [f"spec.{field}"]
    with pytest.raises(AssertionError, match="podSpecOverrides"):
        kube.apply_dry_run([jobs["v2.0"]], kubectl_validation=True)
