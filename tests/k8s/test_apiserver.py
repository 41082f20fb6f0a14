"""The test API server itself (tests/k8s/apiserver): what it is set up with, and the fixes its build needs.

If these fail, the tests built on the fixture prove less than they claim: an identity that is not the
pipeline's, a CRD schema that lost rules, or a server that refuses valid objects.
"""

from __future__ import annotations

import copy

import pytest
import yaml
from kubernetes import client

from tests.k8s.apiserver.cluster import CRD_DIR, CRD_FILES, crd_for_kube_1_20

REMOVED_KEYS = {"description", "x-kubernetes-validations", "selectableFields"}


def paths(node, prefix=()):
    if isinstance(node, dict):
        for key, value in node.items():
            yield prefix + (key,)
            yield from paths(value, prefix + (key,))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from paths(value, prefix + (i,))


@pytest.mark.parametrize("name", CRD_FILES)
def test_crds_lose_only_what_1_20_cannot_use(name):
    original = yaml.load((CRD_DIR / name).read_text(), Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    stripped = crd_for_kube_1_20(original)
    kept = set(paths(stripped["spec"]))
    lost = {p for p in paths(original["spec"]) if p not in kept}
    assert not any("x-kubernetes-validations" in p for p in kept)
    # Every lost path lies under a removed key (a description text, a CEL rule list, selectableFields).
    assert all(
        any(
            isinstance(k, str)
            and k in REMOVED_KEYS
            and not isinstance(_get(original["spec"], p[: i + 1]), dict)
            for i, k in enumerate(p)
        )
        for p in lost
    )


def _get(node, path):
    for key in path:
        node = node[key]
    return node


def test_empty_strings_and_empty_string_defaults_are_valid_in_custom_resources(admin_api):
    """Built with Go 1.19 as is, 1.20's schema validator takes every "" for null and refuses it; build.sh fixes
    the vendored validator. The server also applies the CRD's ``default: ""`` (here ``secretKeyRef.name``)."""
    isvc = {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "empty-strings", "namespace": "medgo"},
        "spec": {
            "predictor": {
                "serviceAccountName": "",
                "model": {
                    "modelFormat": {"name": "medgo"},
                    "storageUri": "s3://m/v1",
                    "env": [{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"key": "token"}}}],
                },
            }
        },
    }
    stored = client.CustomObjectsApi(admin_api).create_namespaced_custom_object(
        "serving.kserve.io", "v1beta1", "medgo", "inferenceservices", copy.deepcopy(isvc), dry_run="All"
    )
    predictor = stored["spec"]["predictor"]
    assert predictor["serviceAccountName"] == ""
    assert predictor["model"]["env"][0]["valueFrom"]["secretKeyRef"] == {"key": "token", "name": ""}


def test_pipeline_identity_has_exactly_the_roles_rights(kube):
    def can(*args: str) -> str:
        return kube.kubectl("auth", "can-i", *args, as_pipeline=True, check=False).stdout.strip()

    assert can("create", "pytorchjobs.kubeflow.org", "-n", "medgo") == "yes"
    assert can("patch", "inferenceservices.serving.kserve.io", "-n", "medgo") == "yes"
    assert can("create", "pytorchjobs.kubeflow.org", "-n", "default") == "no"
    assert can("get", "secrets", "-n", "medgo") == "no"
    assert can("patch", "pytorchjobs.kubeflow.org", "-n", "medgo") == "no"


def test_unknown_tokens_are_refused(kube):
    cfg = kube.configuration("not-a-token")
    with client.ApiClient(cfg) as api, pytest.raises(client.exceptions.ApiException) as info:
        client.CoreV1Api(api).list_namespaced_pod("medgo")
    assert info.value.status == 401
