"""Every site's manifests pass ``kubectl apply --dry-run=server`` against a real API server, and broken ones
are refused, so the check can fail.

The server is the kube-apiserver 1.20 of tests/k8s/apiserver (the vendored CRDs installed, namespace
``medgo`` and its RBAC applied). 1.20 predates server-side field validation (1.25+): it prunes fields no
schema declares instead of refusing them. So each check runs twice: once with kubectl's own validation
against the OpenAPI schemas the server publishes (CRD schemas included), and once with ``--validate=false``,
leaving every decision to the server, whose answer (what it would store) must keep every field that was
sent: a dropped field fails the check, as ``--validate=strict`` would on a current server.
"""

from __future__ import annotations

import copy
import subprocess
from pathlib import Path

import pytest
import yaml

from tests.k8s.apiserver.cluster import dropped_fields, object_key

REPO = Path(__file__).resolve().parents[2]
OVERLAYS = sorted(
    p.name for p in (REPO / "manifests" / "overlays").iterdir() if (p / "kustomization.yaml").exists()
)
PYTORCHJOB_TEMPLATE = REPO / "manifests" / "base" / "templates" / "pytorchjob.yaml"


def rendered(site: str) -> list[dict]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(REPO / "manifests" / "overlays" / site)],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def server_check(kube_cluster, objects: list[dict]) -> list[str]:
    """Problems the server finds in ``objects``: its refusal, or fields it would drop."""
    try:
        returned = {object_key(o): o for o in kube_cluster.apply_dry_run(objects, kubectl_validation=False)}
    except AssertionError as refused:
        return [str(refused)]
    problems = []
    for obj in objects:
        stored = returned.get(object_key(obj))
        if stored is None:
            problems.append(f"{object_key(obj)}: not in the server's answer")
            continue
        problems += [
            f"{obj['kind']}/{obj['metadata']['name']}: the server dropped {path}"
            for path in dropped_fields(obj, stored)
        ]
    return problems


@pytest.mark.parametrize("site", OVERLAYS)
def test_overlay_passes_server_side_dry_run(site, kube_cluster):
    objects = rendered(site)
    namespaced = [o for o in objects if o["kind"] not in ("Namespace", "PriorityClass")]
    assert namespaced and all(o["metadata"].get("namespace") == "medgo" for o in namespaced)
    assert {"InferenceService", "ServingRuntime", "Role", "PersistentVolumeClaim"} <= {
        o["kind"] for o in objects
    }
    kube_cluster.apply_dry_run(objects, kubectl_validation=True)
    assert server_check(kube_cluster, objects) == []


def test_reference_pytorchjob_passes_server_side_dry_run(kube_cluster):
    job = yaml.safe_load(PYTORCHJOB_TEMPLATE.read_text())
    kube_cluster.apply_dry_run([job], kubectl_validation=True)
    assert server_check(kube_cluster, [job]) == []


def test_string_where_an_integer_belongs_is_refused_by_the_server(kube_cluster):
    (isvc,) = [o for o in rendered("dev-cpu") if o["kind"] == "InferenceService"]
    broken = copy.deepcopy(isvc)
    broken["spec"]["predictor"]["minReplicas"] = "one"
    (problem,) = server_check(kube_cluster, [broken])
    assert "spec.predictor.minReplicas" in problem and "must be of type integer" in problem
    with pytest.raises(AssertionError, match="minReplicas"):
        kube_cluster.apply_dry_run([broken], kubectl_validation=True)


def test_unknown_field_in_a_pytorchjob_is_caught(kube_cluster):
    """1.20 accepts the object and prunes the field; the comparison with what was sent catches it, and
    kubectl's validation against the server's published schema refuses it outright."""
    job = yaml.safe_load(PYTORCHJOB_TEMPLATE.read_text())
    job["spec"]["pytorchReplicaSpecs"]["Master"]["restartPolicyy"] = "Never"
    assert server_check(kube_cluster, [job]) == [
        "PyTorchJob/medgo-sft: the server dropped spec.pytorchReplicaSpecs.Master.restartPolicyy"
    ]
    with pytest.raises(AssertionError, match='unknown field "restartPolicyy"'):
        kube_cluster.apply_dry_run([job], kubectl_validation=True)


def test_unknown_field_in_a_builtin_kind_is_caught(kube_cluster):
    (pvc,) = [o for o in rendered("dev-cpu") if o["kind"] == "PersistentVolumeClaim"][:1]
    broken = copy.deepcopy(pvc)
    broken["spec"]["storageClassNmae"] = "fast"
    assert server_check(kube_cluster, [broken]) == [
        f"PersistentVolumeClaim/{pvc['metadata']['name']}: the server dropped spec.storageClassNmae"
    ]
