"""Every cluster name in :mod:`medgo.k8s.names` is defined by the manifests, so a rename cannot drift.

The base is rendered with ``kubectl kustomize`` (what ``kubectl apply -k`` applies); GPU scheduling names
live in the GPU site's overlay, image names in the compiled pipeline and the ServingRuntime.
"""

from __future__ import annotations

import yaml

from medgo import __version__
from medgo.k8s import names
from tests.manifests.test_manifests import BASE, MANIFESTS, REPO, _find, _render, needs_kubectl

pytestmark = needs_kubectl


def _base() -> list[dict]:
    return [dict(o) for o in _render(str(BASE))]


def test_namespace_pvcs_accounts_role_and_priority_classes_exist():
    objects = _base()
    for kind, name in [
        ("Namespace", names.NAMESPACE),
        ("PersistentVolumeClaim", names.DATA_PVC),
        ("PersistentVolumeClaim", names.CHECKPOINT_PVC),
        ("ServiceAccount", names.PIPELINE_SERVICE_ACCOUNT),
        ("ServiceAccount", names.TRAINER_SERVICE_ACCOUNT),
        ("ServiceAccount", names.SERVING_SERVICE_ACCOUNT),
        ("Role", names.PIPELINE_ROLE),
        ("PriorityClass", names.TRAINING_PRIORITY_CLASS),
        ("PriorityClass", names.SERVING_PRIORITY_CLASS),
        ("ServingRuntime", names.CPU_SERVING_RUNTIME),
        ("InferenceService", names.INFERENCE_SERVICE),
        ("ConfigMap", names.KFP_LAUNCHER_CONFIGMAP),
    ]:
        obj = _find(objects, kind, name)
        if kind not in {"Namespace", "PriorityClass"}:
            assert obj["metadata"]["namespace"] == names.NAMESPACE, (kind, name)
    binding = _find(objects, "RoleBinding", names.PIPELINE_ROLE)
    assert binding["roleRef"]["name"] == names.PIPELINE_ROLE
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": names.PIPELINE_SERVICE_ACCOUNT, "namespace": names.NAMESPACE}
    ]


def test_feedback_service_names_exist():
    objects = _base()
    for kind in ("Deployment", "Service", "ServiceAccount"):
        assert _find(objects, kind, names.FEEDBACK_SERVICE)["metadata"]["namespace"] == names.NAMESPACE
    _find(objects, "PersistentVolumeClaim", names.FEEDBACK_PVC)
    pod = _find(objects, "Deployment", names.FEEDBACK_SERVICE)["spec"]["template"]["spec"]
    mounts = {m["name"]: m["mountPath"] for m in pod["containers"][0]["volumeMounts"]}
    assert mounts["store"] == names.FEEDBACK_MOUNT and mounts["tokens"] == names.FEEDBACK_TOKENS_MOUNT
    assert (
        names.FEEDBACK_SERVICE_URL == f"http://{names.FEEDBACK_SERVICE}.{names.NAMESPACE}.svc.cluster.local"
    )


def test_s3_secret_and_its_keys_are_what_the_manifests_reference():
    objects = _base()
    serving_account = _find(objects, "ServiceAccount", names.SERVING_SERVICE_ACCOUNT)
    assert {"name": names.S3_SECRET} in serving_account["secrets"]
    launcher = yaml.safe_load(_find(objects, "ConfigMap", names.KFP_LAUNCHER_CONFIGMAP)["data"]["providers"])
    ref = launcher["s3"]["default"]["credentials"]["secretRef"]
    assert ref["secretName"] == names.S3_SECRET
    assert {ref["accessKeyKey"], ref["secretKeyKey"]} <= set(names.S3_SECRET_KEYS)
    (container,) = _find(objects, "ServingRuntime", names.CPU_SERVING_RUNTIME)["spec"]["containers"]
    assert {"secretRef": {"name": names.S3_SECRET, "optional": True}} in container["envFrom"]


def test_serving_runtime_model_format_image_and_isvc_identity():
    objects = _base()
    runtime = _find(objects, "ServingRuntime", names.CPU_SERVING_RUNTIME)["spec"]
    assert [f["name"] for f in runtime["supportedModelFormats"]] == [names.CPU_MODEL_FORMAT]
    assert runtime["containers"][0]["image"] == names.SERVING_IMAGE
    assert names.SERVING_IMAGE.endswith(f":{__version__}")
    predictor = _find(objects, "InferenceService", names.INFERENCE_SERVICE)["spec"]["predictor"]
    assert predictor["serviceAccountName"] == names.SERVING_SERVICE_ACCOUNT
    assert predictor["priorityClassName"] == names.SERVING_PRIORITY_CLASS
    assert predictor["model"]["runtime"] == names.CPU_SERVING_RUNTIME


def test_gpu_pool_label_and_toleration_match_the_gpu_site():
    objects = [dict(o) for o in _render(str(MANIFESTS / "overlays" / "onprem-a100"))]
    predictor = _find(objects, "InferenceService", names.INFERENCE_SERVICE)["spec"]["predictor"]
    assert predictor["nodeSelector"][names.GPU_NODE_LABEL] == names.DEFAULT_GPU_PRODUCT
    assert names.GPU_TOLERATION in predictor["tolerations"]
    assert names.GPU_RESOURCE in predictor["model"]["resources"]["limits"]


def test_training_template_and_compiled_pipeline_use_the_named_images_and_storage():
    template = yaml.safe_load((BASE / "templates" / "pytorchjob.yaml").read_text())
    pod = template["spec"]["pytorchReplicaSpecs"]["Master"]["template"]["spec"]
    assert pod["serviceAccountName"] == names.TRAINER_SERVICE_ACCOUNT
    assert pod["priorityClassName"] == names.TRAINING_PRIORITY_CLASS
    assert pod["containers"][0]["image"] == names.TRAINER_IMAGE
    assert {
        v["persistentVolumeClaim"]["claimName"] for v in pod["volumes"] if "persistentVolumeClaim" in v
    } == {names.DATA_PVC, names.CHECKPOINT_PVC}
    compiled = (REPO / "pipelines" / "medgo_pipeline.yaml").read_text()
    for expected in (
        names.RUNTIME_IMAGE,
        names.TRAINER_IMAGE,
        names.DATA_PVC,
        names.DATA_MOUNT,
        names.S3_SECRET,
    ):
        assert expected in compiled, expected
