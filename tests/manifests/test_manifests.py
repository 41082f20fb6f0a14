"""The kustomize manifests: every overlay renders, every object is schema-valid, and the security rules hold.

Each overlay is rendered with ``kubectl kustomize`` (as ``kubectl apply -k`` would). Kubernetes' own kinds are
validated with ``kubernetes_validate`` (strict: unknown fields fail) against the 1.32 API; custom resources
(InferenceService, ServingRuntime, PyTorchJob) against the operators' published CRD schemas vendored in
tests/fixtures/crds. These checks run anywhere, offline; test_server_dry_run.py sends the same overlays to a real
API server (kube-apiserver 1.20: no CEL rules, no operators' admission webhooks).
The manifests are also checked against what the deploy code builds, so the two cannot drift apart.
"""

from __future__ import annotations

import functools
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from medgo.k8s import names
from medgo.k8s.pytorchjob import build_pytorchjob
from tests.fixtures.crds import CRD_KINDS, assert_valid_crd_object

REPO = Path(__file__).resolve().parents[2]
MANIFESTS = REPO / "manifests"
BASE = MANIFESTS / "base"
TEMPLATE = BASE / "templates" / "pytorchjob.yaml"
OVERLAYS = sorted(p.name for p in (MANIFESTS / "overlays").iterdir() if (p / "kustomization.yaml").exists())
K8S_VERSION = "1.32"
KUBECTL = shutil.which("kubectl")

needs_kubectl = pytest.mark.skipif(
    KUBECTL is None,
    reason="kubectl (with built-in kustomize) is not on PATH; it is needed to render the overlays",
)

EXPECTED_OBJECTS = {
    ("Namespace", "medgo"),
    ("ServiceAccount", "medgo-pipeline"),
    ("ServiceAccount", "medgo-trainer"),
    ("ServiceAccount", "medgo-serving"),
    ("Role", "medgo-pipeline"),
    ("RoleBinding", "medgo-pipeline"),
    ("PersistentVolumeClaim", "medgo-data"),
    ("PersistentVolumeClaim", "medgo-checkpoints"),
    ("PriorityClass", "medgo-training"),
    ("PriorityClass", "medgo-serving"),
    ("ServingRuntime", "medgo-cpu"),
    ("NetworkPolicy", "medgo-predictor-ingress"),
    ("InferenceService", "medgo"),
    ("ConfigMap", "kfp-launcher"),
    ("ServiceAccount", "medgo-feedback"),
    ("PersistentVolumeClaim", "medgo-feedback"),
    ("Deployment", "medgo-feedback"),
    ("Service", "medgo-feedback"),
    ("NetworkPolicy", "medgo-feedback-ingress"),
}
CLUSTER_SCOPED_KINDS = {"Namespace", "PriorityClass"}

#: The pipeline Role, exactly: (apiGroup, resource) -> verbs.
LEAST_PRIVILEGE = {
    ("kubeflow.org", "pytorchjobs"): {"create", "get", "list", "watch", "delete"},
    ("trainer.kubeflow.org", "trainjobs"): {"create", "get", "list", "watch", "delete"},
    ("serving.kserve.io", "inferenceservices"): {"create", "get", "patch"},
    ("", "pods"): {"list"},
    ("", "pods/log"): {"get"},
}

#: Parameters under which build_pytorchjob reproduces base/templates/pytorchjob.yaml.
TEMPLATE_PARAMS: dict[str, Any] = dict(
    name="medgo-sft",
    namespace="medgo",
    image="ghcr.io/medgo/medgo-trainer:0.1.0",
    command=["python", "-m", "medgo.train.node", "--stage", "sft", "--config", "/config/train.yaml"],
    nnodes=2,
    nproc_per_node=8,
    gpus_per_node=8,
    cpu="48",
    memory="480Gi",
    shm_size="64Gi",
    node_selector={"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB", "node-pool": "a100"},
    tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    priority_class="medgo-training",
    pvc_mounts={names.DATA_PVC: names.DATA_MOUNT, names.CHECKPOINT_PVC: names.CHECKPOINT_MOUNT},
    config_map="medgo-train-config",
    active_deadline_seconds=259200,
    backoff_limit=2,
)

# A literal secret value: the key name followed by '=' or ':' and something that is not a placeholder
# ($VAR, "$VAR", <...>) or a reference.
_CREDENTIAL_PATTERNS = [
    re.compile(r"AWS_SECRET_ACCESS_KEY\s*[=:]\s*[\"']?(?![\"'$<{\s]|$)"),
    re.compile(r"AWS_ACCESS_KEY_ID\s*[=:]\s*[\"']?(?![\"'$<{\s]|$)"),
    re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    re.compile(r"(?i)\b(password|passwd|secret_key|token)\s*[=:]\s*[\"']?[A-Za-z0-9+/_\-]{8,}"),
]


@functools.cache
def _render(path: str) -> tuple[dict, ...]:
    result = subprocess.run(
        [KUBECTL, "kustomize", path], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, f"kubectl kustomize {path} failed:\n{result.stderr}"
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


@pytest.fixture(params=OVERLAYS)
def overlay(request) -> str:
    return request.param


@pytest.fixture
def objects(overlay) -> list[dict]:
    if KUBECTL is None:
        pytest.skip("kubectl (with built-in kustomize) is not on PATH; it is needed to render the overlays")
    return [dict(o) for o in _render(str(MANIFESTS / "overlays" / overlay))]


def _find(objects: list[dict], kind: str, name: str) -> dict:
    (obj,) = [o for o in objects if o["kind"] == kind and o["metadata"]["name"] == name]
    return obj


def _label(obj: dict) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def _pod_specs(obj: Any, path: str = ""):
    """Every (path, pod-spec-like dict with ``containers``) inside an object."""
    if isinstance(obj, dict):
        if isinstance(obj.get("containers"), list):
            yield path, obj
        for key, value in obj.items():
            yield from _pod_specs(value, f"{path}.{key}")
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            yield from _pod_specs(value, f"{path}[{i}]")


def _workloads(obj: dict):
    """(where, pod-level spec, containers) of every pod an object will run.

    An InferenceService predictor is a pod spec whose main container is ``predictor.model`` (the image comes
    from the ServingRuntime).
    """
    if obj["kind"] == "InferenceService":
        pred = obj["spec"]["predictor"]
        yield f"{_label(obj)}.spec.predictor", pred, [pred["model"]]
        return
    for path, spec in _pod_specs(obj.get("spec", {}), ".spec"):
        yield f"{_label(obj)}{path}", spec, spec["containers"] + spec.get("initContainers", [])


# -- rendering and schemas -------------------------------------------------------------------------------


def test_there_are_overlays_for_both_sites():
    assert {"onprem-a100", "dev-cpu"} <= set(OVERLAYS)


def test_overlay_renders_the_expected_objects(objects):
    found = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert found == EXPECTED_OBJECTS


def test_builtin_objects_are_valid_kubernetes(objects):
    errors = []
    for obj in objects:
        if obj["kind"] in CRD_KINDS:
            continue
        try:
            kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{_label(obj)}: {'.'.join(map(str, exc.path))}: {exc.message}")
    assert not errors, "\n".join(errors)


def test_custom_resources_match_their_crds(objects):
    custom = [o for o in objects if o["kind"] in CRD_KINDS]
    assert {o["kind"] for o in custom} == {"InferenceService", "ServingRuntime"}
    for obj in custom:
        assert_valid_crd_object(obj)


def test_objects_are_namespaced_in_medgo(objects):
    for obj in objects:
        if obj["kind"] in CLUSTER_SCOPED_KINDS:
            assert "namespace" not in obj["metadata"], _label(obj)
        else:
            assert obj["metadata"]["namespace"] == "medgo", _label(obj)
        assert obj["metadata"]["labels"]["app.kubernetes.io/part-of"] == "medgo", _label(obj)


@needs_kubectl
def test_base_renders_on_its_own_without_the_pytorchjob_template():
    kinds = {o["kind"] for o in _render(str(BASE))}
    assert "PyTorchJob" not in kinds
    kustomization = yaml.safe_load((BASE / "kustomization.yaml").read_text())
    assert not any("templates" in str(entry) for entry in kustomization.get("resources", []))


def test_pytorchjob_template_is_not_applied_by_any_overlay(objects):
    assert not [o for o in objects if o["kind"] == "PyTorchJob"]


# -- security --------------------------------------------------------------------------------------------


def test_every_container_is_locked_down_and_sized(objects):
    problems = []
    workloads = [w for obj in objects for w in _workloads(obj)]
    assert {where.split(".")[0] for where, _, _ in workloads} == {
        "ServingRuntime/medgo-cpu",
        "InferenceService/medgo",
        "Deployment/medgo-feedback",
    }
    for where, pod, containers in workloads:
        pod_non_root = (pod.get("securityContext") or {}).get("runAsNonRoot") is True
        for container in containers:
            name = f"{where}:{container.get('name', 'model')}"
            sc = container.get("securityContext") or {}
            if not (pod_non_root or sc.get("runAsNonRoot") is True):
                problems.append(f"{name}: runAsNonRoot not set")
            if sc.get("allowPrivilegeEscalation") is not False:
                problems.append(f"{name}: allowPrivilegeEscalation is not false")
            if sc.get("privileged"):
                problems.append(f"{name}: privileged")
            if "ALL" not in (sc.get("capabilities") or {}).get("drop", []):
                problems.append(f"{name}: capabilities not dropped")
            resources = container.get("resources") or {}
            for section in ("requests", "limits"):
                if not {"cpu", "memory"} <= set(resources.get(section) or {}):
                    problems.append(f"{name}: resources.{section} must set cpu and memory")
            if "containers" in pod and not _pinned(container.get("image", "")):
                problems.append(f"{name}: image {container.get('image')!r} is not pinned to a tag or digest")
    assert not problems, "\n".join(problems)


def _pinned(image: str) -> bool:
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    return ":" in last and not last.endswith(":latest")


def test_no_secret_objects_anywhere_under_manifests(objects):
    assert not [o for o in objects if o["kind"] == "Secret"]
    for path in MANIFESTS.rglob("*.yaml"):
        for doc in yaml.safe_load_all(path.read_text()):
            if doc and doc.get("kind") == "Secret":
                pytest.fail(f"{path.relative_to(REPO)} defines a Secret; create it on the cluster instead")


def test_no_literal_credentials_anywhere_under_manifests():
    hits = []
    for path in sorted(p for p in MANIFESTS.rglob("*") if p.is_file()):
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            if any(p.search(line) for p in _CREDENTIAL_PATTERNS):
                hits.append(f"{path.relative_to(REPO)}:{lineno}: {line.strip()}")
    assert not hits, "literal credentials in manifests:\n" + "\n".join(hits)


def test_credential_scan_would_catch_a_literal_key():
    leaked = "  --from-literal=AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
    placeholder = '  --from-literal=AWS_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY"'
    assert any(p.search(leaked) for p in _CREDENTIAL_PATTERNS)
    assert not any(p.search(placeholder) for p in _CREDENTIAL_PATTERNS)


def test_pipeline_role_is_exactly_least_privilege(objects):
    assert not [o for o in objects if o["kind"] in {"ClusterRole", "ClusterRoleBinding"}]
    role = _find(objects, "Role", "medgo-pipeline")
    granted: dict[tuple[str, str], set[str]] = {}
    for rule in role["rules"]:
        assert "resourceNames" not in rule and "nonResourceURLs" not in rule
        for group in rule["apiGroups"]:
            for resource in rule["resources"]:
                granted.setdefault((group, resource), set()).update(rule["verbs"])
    assert granted == LEAST_PRIVILEGE
    binding = _find(objects, "RoleBinding", "medgo-pipeline")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "Role",
        "name": "medgo-pipeline",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "medgo-pipeline", "namespace": "medgo"}]


def test_only_the_pipeline_account_gets_an_api_token(objects):
    accounts = {o["metadata"]["name"]: o for o in objects if o["kind"] == "ServiceAccount"}
    assert accounts["medgo-trainer"]["automountServiceAccountToken"] is False
    assert accounts["medgo-serving"]["automountServiceAccountToken"] is False
    assert accounts["medgo-serving"]["secrets"] == [{"name": "medgo-s3"}]
    assert accounts["medgo-feedback"]["automountServiceAccountToken"] is False
    assert "automountServiceAccountToken" not in accounts["medgo-pipeline"]


def _namespaces(rule: dict) -> set[str]:
    (peer,) = [p for p in rule["from"] if "namespaceSelector" in p]
    (expr,) = peer["namespaceSelector"]["matchExpressions"]
    assert expr["key"] == "kubernetes.io/metadata.name" and expr["operator"] == "In"
    return set(expr["values"])


def test_network_policy_admits_ingress_knative_and_metrics_scrapes_from_monitoring(objects):
    policy = _find(objects, "NetworkPolicy", "medgo-predictor-ingress")["spec"]
    assert policy["podSelector"] == {
        "matchExpressions": [{"key": "serving.kserve.io/inferenceservice", "operator": "Exists"}]
    }
    assert policy["policyTypes"] == ["Ingress"]
    traffic, scrape = policy["ingress"]
    assert set(traffic["from"][0]) == {"namespaceSelector"} and "ports" not in traffic
    assert _namespaces(traffic) == {"istio-system", "knative-serving", "kourier-system"}
    assert _namespaces(scrape) == {names.MONITORING_NAMESPACE}
    # Prometheus reaches the metrics ports only: the server's /metrics, KServe's aggregate, the queue-proxy.
    assert {p["port"] for p in scrape["ports"]} == {8080, 9088, 9091}
    runtime = _find(objects, "ServingRuntime", "medgo-cpu")["spec"]
    assert int(runtime["annotations"]["prometheus.kserve.io/port"]) in {p["port"] for p in scrape["ports"]}


def test_feedback_store_has_one_writer_on_a_private_volume(objects):
    deployment = _find(objects, "Deployment", names.FEEDBACK_SERVICE)["spec"]
    assert deployment["replicas"] == 1 and deployment["strategy"] == {"type": "Recreate"}
    pvc = _find(objects, "PersistentVolumeClaim", names.FEEDBACK_PVC)["spec"]
    assert pvc["accessModes"] == ["ReadWriteOnce"]
    pod = deployment["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "medgo.serve.feedback_service"]
    assert f"--db_path={names.FEEDBACK_MOUNT}/feedback.sqlite" in container["args"]
    assert f"--tokens_dir={names.FEEDBACK_TOKENS_MOUNT}" in container["args"]  # authentication is on
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["store"]["persistentVolumeClaim"]["claimName"] == names.FEEDBACK_PVC
    assert volumes["tokens"]["secret"]["secretName"] == names.FEEDBACK_TOKENS_SECRET
    service = _find(objects, "Service", names.FEEDBACK_SERVICE)["spec"]
    assert service["selector"] == deployment["selector"]["matchLabels"]
    policy = _find(objects, "NetworkPolicy", "medgo-feedback-ingress")["spec"]
    assert policy["podSelector"] == {"matchLabels": deployment["selector"]["matchLabels"]}
    (rule,) = policy["ingress"]
    assert {"podSelector": {}} in rule["from"] and _namespaces(rule) == {names.MONITORING_NAMESPACE}
    # Every replica of the medgo-cpu runtime reaches the store through the service, with the record token only.
    runtime = _find(objects, "ServingRuntime", "medgo-cpu")["spec"]
    (server,) = runtime["containers"]
    assert f"--feedback_service_url={names.FEEDBACK_SERVICE_URL}" in server["args"]
    assert f"--feedback_tokens_dir={names.FEEDBACK_TOKENS_MOUNT}" in server["args"]
    (tokens,) = [v for v in runtime["volumes"] if "secret" in v]  # the only Secret the runtime mounts
    assert tokens["secret"] == {
        "secretName": names.FEEDBACK_TOKENS_SECRET,
        "items": [{"key": "record", "path": "record"}],
    }


# -- site settings ---------------------------------------------------------------------------------------


def test_pvcs_are_shared_and_sized_per_site(objects, overlay):
    expected = {"onprem-a100": ("cephfs", "2Ti", "4Ti"), "dev-cpu": ("standard", "10Gi", "20Gi")}[overlay]
    data, ckpt = (
        _find(objects, "PersistentVolumeClaim", "medgo-data"),
        _find(objects, "PersistentVolumeClaim", "medgo-checkpoints"),
    )
    for pvc in (data, ckpt):
        assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
        assert pvc["spec"]["storageClassName"] == expected[0]
    assert data["spec"]["resources"]["requests"]["storage"] == expected[1]
    assert ckpt["spec"]["resources"]["requests"]["storage"] == expected[2]


def test_serving_priority_outranks_training(objects):
    training = _find(objects, "PriorityClass", "medgo-training")
    serving = _find(objects, "PriorityClass", "medgo-serving")
    assert serving["value"] > training["value"]
    assert training["preemptionPolicy"] == "Never"


def test_medgo_serving_runtime_runs_medgo_serve(objects):
    runtime = _find(objects, "ServingRuntime", "medgo-cpu")["spec"]
    assert [f["name"] for f in runtime["supportedModelFormats"]] == ["medgo"]
    (container,) = runtime["containers"]
    assert container["name"] == "kserve-container"
    assert container["image"].startswith("ghcr.io/medgo/medgo-serving:")
    assert container["command"] == ["python", "-m", "medgo.serve"]
    assert container["args"][:3] == ["--model_name={{.Name}}", "--model_dir=/mnt/models", "--http_port=8080"]
    from medgo.serve.server import build_parser

    parsed = build_parser().parse_args([a.replace("{{.Name}}", "medgo") for a in container["args"]])
    assert parsed.feedback_service_url and parsed.feedback_tokens_dir  # the server knows every option


#: The deploy step's parameters that reproduce each site's InferenceService (the pipeline defaults target
#: the GPU site; `medgo demo` and dev clusters use the CPU runtime).
SITE_DEPLOY = {
    "onprem-a100": {"runtime": "huggingface-vllm", "max_replicas": 4},
    "dev-cpu": {"runtime": "medgo-cpu", "max_replicas": 2, "cpu": "1", "memory": "2Gi"},
}


def test_inference_service_matches_what_the_deployer_builds(objects, overlay, tmp_path):
    """The pipeline's deploy step and `kubectl apply -k` must produce the same predictor."""
    import json

    from medgo.config import DeployConfig
    from medgo.deploy import desired_service

    isvc = _find(objects, "InferenceService", "medgo")
    config = DeployConfig(target="kserve", **SITE_DEPLOY[overlay])
    if config.runtime == "huggingface-vllm":
        adapter = tmp_path / "adapter"
        adapter.mkdir()
        (adapter / "adapter_config.json").write_text(
            json.dumps({"base_model_name_or_path": "s3://medgo-models/medgo/latest/base"})
        )
        built, _ = desired_service(str(adapter), "s3://medgo-models/medgo/latest/adapter", config)
    else:
        built, _ = desired_service("unused", "s3://medgo-models/medgo/latest", config)
    assert isvc["spec"] == built["spec"]
    assert isvc["metadata"]["annotations"] == built["metadata"]["annotations"]


# -- the PyTorchJob template -----------------------------------------------------------------------------


def test_pytorchjob_template_is_valid_and_equals_the_builder_output():
    docs = [d for d in yaml.safe_load_all(TEMPLATE.read_text()) if d]
    (job,) = docs
    assert_valid_crd_object(job)
    kubernetes_validate_pod_templates(job)
    assert job == build_pytorchjob(**TEMPLATE_PARAMS)


def kubernetes_validate_pod_templates(job: dict) -> None:
    """The CRD schema checks structure; the pod templates also have to be valid core/v1 PodTemplates."""
    for replica_type, spec in job["spec"]["pytorchReplicaSpecs"].items():
        template = {
            "apiVersion": "v1",
            "kind": "PodTemplate",
            "metadata": {"name": f"{job['metadata']['name']}-{replica_type.lower()}"},
            "template": spec["template"],
        }
        kubernetes_validate.validate(template, K8S_VERSION, strict=True)


def test_pipeline_root_is_on_the_medgo_store_with_secret_credentials(objects):
    """Artifacts must live where the medgo-s3 credentials reach (not KFP's bundled MinIO)."""
    (launcher,) = [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "kfp-launcher"]
    assert launcher["data"]["defaultPipelineRoot"].startswith("s3://")
    providers = yaml.safe_load(launcher["data"]["providers"])
    credentials = providers["s3"]["default"]["credentials"]
    assert credentials == {
        "fromEnv": False,
        "secretRef": {
            "secretName": "medgo-s3",
            "accessKeyKey": "AWS_ACCESS_KEY_ID",
            "secretKeyKey": "AWS_SECRET_ACCESS_KEY",
        },
    }
