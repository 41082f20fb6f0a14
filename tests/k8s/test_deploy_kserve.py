"""The deploy stage's KServe path: the complete predictor, the mode check, canary → smoke test → promote or
roll back, in both deployment modes.

Runs against the real API server of tests/k8s/apiserver: the deployer talks as the pipeline's
ServiceAccount (RBAC checks every call), the tests seed and inspect as admin, and what the deployer sent is
read back from the server's audit log. No KServe controller runs there: :class:`tests.k8s.kserve_sim.KServeSim`
computes the status KServe would write for each new generation (Serverless revisions and traffic, Standard
canary statuses) and :class:`KServe` writes it through the status subresource as watch events arrive.

The smoke tests are real: KServe ModelServers on 127.0.0.1 serving the demo's tiny model, one under the
service's name (``medgo``, as medgo-cpu serves it) and one only under the adapter's name (``medgo-lora``, as
the vLLM runtime serves a LoRA adapter), asked over the OpenAI-compatible route. A Standard-mode canary is
reached at its Service's cluster DNS name, which a small HTTP proxy on 127.0.0.1 resolves to a local
server (the stand-in for cluster DNS).
"""

from __future__ import annotations

import http.client
import http.server
import json
import socket
import threading
import time
from collections.abc import Callable
from urllib.parse import urlsplit

import pytest
from kubernetes import client

from medgo.config import DeployConfig
from medgo.deploy import deploy_model, kserve_storage_uri
from medgo.errors import MedgoError
from medgo.k8s._common import Poller, merge_patch_to
from medgo.k8s.inference_service import (
    DEPLOYMENT_MODE_ANNOTATION,
    GROUP,
    PLURAL,
    VERSION,
    InferenceServiceDeployer,
    build_inference_service,
    canary_url,
    cluster_local,
    standard_canary,
)
from tests.fixtures.crds import assert_valid_crd_object
from tests.k8s.apiserver.cluster import NAMESPACE, wait_until
from tests.k8s.apiserver.controllers import INFERENCESERVICE, ObjectWatch
from tests.k8s.kserve_sim import KServeSim

CONFIG = DeployConfig(
    target="kserve",
    runtime="medgo-cpu",
    canary_traffic_percent=10,
    ready_timeout_s=60,
    smoke_require_refusal=False,  # a random tiny model refuses nothing; the rollback tests turn it on
    smoke_max_tokens=8,
)
A100 = "NVIDIA-A100-SXM4-80GB"


# -- the harness ------------------------------------------------------------------------------------------
class KServe:
    """Plays KServe's controller on the real API server: on each generation it has not observed, writes
    :meth:`KServeSim.status` through the status subresource (keys KServe would drop are removed)."""

    def __init__(self, kube, signal, sim: KServeSim, on_spec: Callable[[dict], None] | None = None) -> None:
        self.kube, self.signal, self.sim, self.on_spec = kube, signal, sim, on_spec
        self.api = kube.admin_client()
        self.custom = client.CustomObjectsApi(self.api)
        self.watch = ObjectWatch(self.api, INFERENCESERVICE, self._on_event)

    def start(self) -> KServe:
        self.watch.start()
        return self

    def stop(self) -> None:
        try:
            self.watch.stop()
        finally:
            self.api.close()

    def _on_event(self, event_type: str, isvc: dict) -> None:
        if event_type == "DELETED":
            return
        old = isvc.get("status") or {}
        if old.get("observedGeneration") == isvc["metadata"]["generation"]:
            return
        if self.on_spec:
            self.on_spec(isvc)
        patch = merge_patch_to(old, self.sim.status(isvc))
        meta = isvc["metadata"]
        self.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, meta["namespace"], PLURAL, meta["name"], {"status": patch}
        )
        self.signal.notify()


class SteppedClock:
    """A poller clock that runs ahead: each sleep waits for a simulated controller's write (at most
    ``real_s`` seconds of real time) and then advances by the whole requested sleep, so a timeout of
    minutes passes in seconds while status written meanwhile is still seen."""

    def __init__(self, signal, real_s: float = 1.0) -> None:
        self.signal, self.real_s, self.now = signal, real_s, time.monotonic()

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.signal.sleep(min(seconds, self.real_s))
        self.now += seconds


class Cluster:
    """The real API server with KServe simulated, and a deployer acting as the pipeline."""

    def __init__(self, kube, pipeline_api, admin_api, signal) -> None:
        self.kube, self.signal = kube, signal
        self.admin = client.CustomObjectsApi(admin_api)
        clock = SteppedClock(signal)
        poller = Poller(clock=clock.clock, sleep=clock.sleep)
        self.deployer = InferenceServiceDeployer(client.CustomObjectsApi(pipeline_api), poller=poller)
        self.controllers: list[KServe] = []
        self.mark = kube.audit_offset()

    def kserve(self, on_spec: Callable[[dict], None] | None = None, **settings) -> KServeSim:
        sim = KServeSim(**settings)
        self.controllers.append(KServe(self.kube, self.signal, sim, on_spec).start())
        return sim

    def seed(self, isvc: dict) -> None:
        """The service as the site's ``kubectl apply`` left it, rolled out by KServe (when it runs)."""
        self.admin.create_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, isvc)
        if self.controllers:
            wait_until(
                lambda: (self.stored().get("status") or {}).get("observedGeneration") == 1,
                timeout_s=20,
                what="first revision rolled out",
            )
        self.mark = self.kube.audit_offset()

    def stored(self) -> dict:
        return self.admin.get_namespaced_custom_object(GROUP, VERSION, NAMESPACE, PLURAL, "medgo")

    def events(self) -> list[dict]:
        """The pipeline's requests to InferenceServices since the seed, as the server audited them."""
        return [e for e in self.kube.audit_events(self.mark) if e["objectRef"]["resource"] == PLURAL]

    def written(self) -> list[dict]:
        """The bodies of the deployer's successful writes (dry runs excluded), in order."""
        return [
            e["requestObject"]
            for e in self.events()
            if e["verb"] in ("create", "patch", "delete")
            and "dryRun" not in e["requestURI"]
            and e["responseStatus"]["code"] < 400
        ]

    def stop(self) -> None:
        for controller in self.controllers:
            controller.stop()


@pytest.fixture
def cluster(kube, pipeline_api, admin_api, change_signal):
    harness = Cluster(kube, pipeline_api, admin_api, change_signal)
    yield harness
    harness.stop()


@pytest.fixture(scope="module")
def medgo_url(sample_model_dir, tmp_path_factory):
    """A server that answers only to ``medgo``: a revision without the adapter."""
    from medgo.serve.local import serve_locally

    # A server that also answers to the adapter's name (ServeConfig.adapter_model_name) is told not to.
    only_base = ["--adapter_model_name", ""]
    log = tmp_path_factory.mktemp("medgo") / "log"
    with serve_locally(str(sample_model_dir), log_path=log, extra_args=only_base) as url:
        yield url


@pytest.fixture(scope="module")
def lora_url(sample_model_dir, tmp_path_factory):
    """A server that answers only to the adapter's model name, as KServe's vLLM runtime serves an adapter."""
    from medgo.serve.local import serve_locally

    log = tmp_path_factory.mktemp("lora") / "log"
    with serve_locally(str(sample_model_dir), model_name="medgo-lora", log_path=log) as url:
        yield url


class _ClusterDns(http.server.BaseHTTPRequestHandler):
    """A forward proxy: ``http://<name>.svc.cluster.local/...`` is served by the local server mapped to it."""

    routes: dict[str, str] = {}

    def _forward(self) -> None:
        target = urlsplit(self.path)
        backend = urlsplit(self.routes.get(target.hostname, ""))
        if not backend.hostname:
            self.send_error(502, f"no route for {target.hostname}")
            return
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        conn = http.client.HTTPConnection(backend.hostname, backend.port, timeout=120)
        conn.request(self.command, target.path, body=body, headers={"content-type": "application/json"})
        answer = conn.getresponse()
        data = answer.read()
        self.send_response(answer.status)
        self.send_header("content-type", answer.getheader("content-type", "application/json"))
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
        conn.close()

    do_GET = do_POST = _forward  # noqa: N815 - http.server's naming

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def cluster_dns(monkeypatch):
    """``cluster_dns[host] = local_url``: requests to ``http://host/…`` reach ``local_url``."""
    routes: dict[str, str] = {}
    handler = type("Routes", (_ClusterDns,), {"routes": routes})
    proxy = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=proxy.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{proxy.server_address[1]}")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    yield routes
    proxy.shutdown()
    proxy.server_close()


def dead_url() -> str:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def cpu_site(**overrides) -> dict:
    params = dict(
        name="medgo",
        namespace="medgo",
        storage_uri="s3://medgo-models/medgo/v1",
        runtime="medgo-cpu",
        deployment_mode="Serverless",
        priority_class="medgo-serving",
    )
    return build_inference_service(**{**params, **overrides})


def adapter_dir(tmp_path, base="minio://mlpipeline/v2/pt"):
    adapter = tmp_path / "dpo"
    adapter.mkdir()
    (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": base}))
    return adapter


def deploy(cluster, tmp_path, config=CONFIG, model_path="unused", model_uri="s3://medgo-models/medgo/v2"):
    return deploy_model(
        model_path=str(model_path),
        model_uri=model_uri,
        config=config,
        record_dir=tmp_path / "record",
        deployer=cluster.deployer,
    )


def valid(isvc: dict) -> None:
    assert_valid_crd_object({k: isvc[k] for k in ("apiVersion", "kind", "metadata", "spec")})


# -- first rollout ------------------------------------------------------------------------------------------
def test_first_gpu_rollout_gets_the_node_pool_and_is_smoke_tested_under_the_adapter_name(
    cluster, lora_url, tmp_path
):
    cluster.kserve(service_url=lora_url)
    config = CONFIG.model_copy(update={"runtime": "huggingface-vllm", "gpus": 2, "max_replicas": 4})
    record = deploy(cluster, tmp_path, config, adapter_dir(tmp_path), "minio://mlpipeline/v2/dpo")
    assert record["decision"] == "deployed" and record["served_model"] == "medgo-lora"
    assert record["smoke"]["passed"] and [c["name"] for c in record["smoke"]["checks"]] == [
        "chat",
        "safety_probe",
    ]
    stored = cluster.stored()
    valid(stored)
    predictor = stored["spec"]["predictor"]
    assert predictor["nodeSelector"] == {"nvidia.com/gpu.product": A100}
    assert predictor["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert (
        predictor["priorityClassName"] == "medgo-serving"
        and predictor["serviceAccountName"] == "medgo-serving"
    )
    assert predictor["model"]["resources"]["limits"]["nvidia.com/gpu"] == "2"
    assert predictor["model"]["args"] == [
        "--backend=vllm",
        "--tensor-parallel-size=2",
        "--model_dir=/mnt/models/base",
        "--enable-lora",
        "--max-lora-rank=64",
        "--lora-modules=medgo-lora=/mnt/models/adapter",
        "--max-num-seqs=16",
    ]
    assert [u["uri"] for u in predictor["storageUris"]] == ["s3://mlpipeline/v2/pt", "s3://mlpipeline/v2/dpo"]
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (1, 4)
    assert stored["metadata"]["annotations"][DEPLOYMENT_MODE_ANNOTATION] == "Serverless"
    assert json.loads((tmp_path / "record" / "deployment.json").read_text())["decision"] == "deployed"


def test_first_rollout_failure_says_there_is_nothing_to_roll_back_to(cluster, tmp_path):
    cluster.kserve(service_url=dead_url(), ready=lambda predictor: False)
    config = CONFIG.model_copy(update={"ready_timeout_s": 30})
    with pytest.raises(
        MedgoError, match="first rollout of medgo/medgo failed .*not ready within 30s.*no previous"
    ):
        deploy(cluster, tmp_path, config)
    assert not (tmp_path / "record" / "deployment.json").exists()


# -- Serverless canaries --------------------------------------------------------------------------------------
def test_healthy_canary_is_smoke_tested_then_promoted_with_the_complete_spec(cluster, medgo_url, tmp_path):
    cluster.kserve(service_url=medgo_url)
    cluster.seed(cpu_site())
    config = CONFIG.model_copy(update={"node_selector": {"node-pool": "cpu-serving"}, "max_replicas": 3})
    record = deploy(cluster, tmp_path, config, model_uri="minio://mlpipeline/v2/artifacts/dpo/trained")
    assert record["decision"] == "promoted" and record["previous_revision"] == "medgo-predictor-00001"
    assert (
        record["endpoint"] == f"{medgo_url}/openai/v1/chat/completions" and record["served_model"] == "medgo"
    )
    canary, promotion = cluster.written()
    # The canary carries the whole predictor, not just the storage location.
    predictor = canary["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 10
    assert predictor["model"]["args"] == ["--max_batch_size=16", "--max_queue=64"]
    assert predictor["nodeSelector"] == {"node-pool": "cpu-serving"} and predictor["maxReplicas"] == 3
    assert promotion == {"spec": {"predictor": {"canaryTrafficPercent": None}}}
    stored = cluster.stored()
    valid(stored)
    assert "canaryTrafficPercent" not in stored["spec"]["predictor"]
    assert stored["spec"]["predictor"]["model"]["storageUri"] == "s3://mlpipeline/v2/artifacts/dpo/trained"
    traffic = stored["status"]["components"]["predictor"]["traffic"]
    assert traffic == [{**traffic[0], "revisionName": "medgo-predictor-00002", "percent": 100}]


def test_canary_with_a_bad_answer_is_rolled_back_and_recorded(cluster, medgo_url, tmp_path):
    cluster.kserve(service_url=medgo_url)
    cluster.seed(cpu_site())
    config = CONFIG.model_copy(update={"smoke_require_refusal": True})  # the tiny model does not refuse
    record = deploy(cluster, tmp_path, config, model_uri="s3://medgo-models/medgo/v3")
    assert record["decision"] == "rolled-back" and "safety_probe: not_refused" in record["reason"]
    assert json.loads((tmp_path / "record" / "deployment.json").read_text())["decision"] == "rolled-back"
    stored = cluster.stored()
    predictor = stored["spec"]["predictor"]
    assert predictor["canaryTrafficPercent"] == 0
    assert (
        predictor["model"]["storageUri"] == "s3://medgo-models/medgo/v1"
    )  # the spec names what serves again
    shares = {t["revisionName"]: t["percent"] for t in stored["status"]["components"]["predictor"]["traffic"]}
    assert shares["medgo-predictor-00001"] == 100 and sum(shares.values()) == 100


def test_canary_that_never_gets_ready_is_rolled_back(cluster, medgo_url, tmp_path):
    cluster.kserve(service_url=medgo_url, ready=lambda p: "v1" in p["model"]["storageUri"])
    cluster.seed(cpu_site())
    record = deploy(cluster, tmp_path, CONFIG.model_copy(update={"ready_timeout_s": 30}))
    assert record["decision"] == "rolled-back" and "not ready within 30s" in record["reason"]


def test_lora_rollout_onto_a_base_only_service_ships_the_adapter_and_asks_for_it(cluster, lora_url, tmp_path):
    base_only = build_inference_service(
        name="medgo",
        namespace="medgo",
        storage_uri="s3://medgo-models/medgo/merged",
        runtime="huggingface-vllm",
        deployment_mode="Serverless",
    )
    assert base_only["spec"]["predictor"]["model"]["args"] == ["--backend=vllm"]
    cluster.kserve(service_url=lora_url)
    cluster.seed(base_only)
    config = CONFIG.model_copy(update={"runtime": "huggingface-vllm"})
    record = deploy(cluster, tmp_path, config, adapter_dir(tmp_path), "minio://mlpipeline/v2/dpo")
    assert record["decision"] == "promoted" and record["served_model"] == "medgo-lora"
    predictor = cluster.stored()["spec"]["predictor"]
    assert "storageUri" not in predictor["model"]
    assert [u["mountPath"] for u in predictor["storageUris"]] == ["/mnt/models/base", "/mnt/models/adapter"]
    assert "--lora-modules=medgo-lora=/mnt/models/adapter" in predictor["model"]["args"]
    assert predictor["nodeSelector"]["nvidia.com/gpu.product"] == A100


def test_a_canary_serving_only_the_base_model_fails_its_smoke_test(cluster, medgo_url, tmp_path):
    """vLLM serves an adapter under its own name: a revision without it answers 404 for medgo-lora."""
    cluster.kserve(service_url=medgo_url)  # answers only to "medgo"
    cluster.seed(cpu_site(runtime="huggingface-vllm", storage_uri="s3://medgo-models/medgo/merged"))
    config = CONFIG.model_copy(update={"runtime": "huggingface-vllm"})
    record = deploy(cluster, tmp_path, config, adapter_dir(tmp_path), "minio://mlpipeline/v2/dpo")
    assert record["decision"] == "rolled-back" and "HTTP 404" in record["reason"]


def test_a_zero_percent_canary_gets_no_traffic_until_it_passed(cluster, medgo_url, tmp_path):
    cluster.kserve(service_url=medgo_url)
    cluster.seed(cpu_site())
    record = deploy(cluster, tmp_path, CONFIG.model_copy(update={"canary_traffic_percent": 0}))
    canary = cluster.written()[0]
    assert canary["spec"]["predictor"]["canaryTrafficPercent"] == 0
    assert record["decision"] == "promoted" and record["canary_traffic_percent"] == 0


def test_a_promotion_the_controller_never_carries_out_is_not_reported_as_deployed(
    cluster, medgo_url, tmp_path
):
    cluster.kserve(service_url=medgo_url, stuck=True)
    cluster.seed(cpu_site())
    with pytest.raises(MedgoError, match="not promoted within 60s"):
        deploy(cluster, tmp_path, CONFIG.model_copy(update={"canary_traffic_percent": 0}))
    assert not (tmp_path / "record" / "deployment.json").exists()


# -- Standard mode ---------------------------------------------------------------------------------------------
def test_standard_mode_canary_runs_beside_the_stable_predictor_then_takes_over(
    cluster, medgo_url, cluster_dns, tmp_path
):
    cluster.seed(cpu_site(deployment_mode="Standard"))
    config = CONFIG.model_copy(update={"deployment_mode": "Standard", "max_replicas": 2})
    with_canary = None

    def route_canary(isvc):  # plays cluster DNS for the canary's Service once the deployer names it
        nonlocal with_canary
        for entry in isvc["spec"].get("canary") or []:
            cluster_dns[f"medgo-{entry['predictor']['name']}-predictor.medgo.svc.cluster.local"] = medgo_url
            with_canary = with_canary or json.loads(json.dumps(isvc["spec"]))

    cluster.kserve(service_url=medgo_url, on_spec=route_canary)
    record = deploy(cluster, tmp_path, config)
    assert record["decision"] == "promoted" and record["mode"] == "Standard"
    [entry] = with_canary["canary"]
    assert entry["trafficPercent"] == 10 and entry["predictor"]["minReplicas"] == 1
    assert not {"maxReplicas", "scaleMetric", "scaleTarget", "containerConcurrency"} & set(entry["predictor"])
    assert with_canary["predictor"]["model"]["storageUri"] == "s3://medgo-models/medgo/v1"  # stable untouched
    valid(
        {
            "apiVersion": f"{GROUP}/{VERSION}",
            "kind": "InferenceService",
            "metadata": {"name": "medgo"},
            "spec": with_canary,
        }
    )
    stored = cluster.stored()
    valid(stored)
    assert "canary" not in stored["spec"]
    assert stored["spec"]["predictor"]["name"] == entry["predictor"]["name"]  # retargeted, no restart
    assert stored["spec"]["predictor"]["model"]["storageUri"] == "s3://medgo-models/medgo/v2"
    assert stored["spec"]["predictor"]["scaleMetric"] == "cpu"


def test_standard_mode_canary_with_a_bad_answer_is_dropped(cluster, medgo_url, cluster_dns, tmp_path):
    def route_canary(isvc):
        for entry in isvc["spec"].get("canary") or []:
            cluster_dns[f"medgo-{entry['predictor']['name']}-predictor.medgo.svc.cluster.local"] = medgo_url

    cluster.kserve(service_url=medgo_url, on_spec=route_canary)
    cluster.seed(cpu_site(deployment_mode="Standard"))
    config = CONFIG.model_copy(update={"deployment_mode": "Standard", "smoke_require_refusal": True})
    record = deploy(cluster, tmp_path, config)
    assert record["decision"] == "rolled-back"
    stored = cluster.stored()
    assert "canary" not in stored["spec"] and "canaryStatuses" not in stored["status"]
    assert stored["spec"]["predictor"]["model"]["storageUri"] == "s3://medgo-models/medgo/v1"


# -- the mode check ------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("site", "config", "message"),
    [
        (
            {"deployment_mode": "Standard"},
            {},
            "runs in Standard mode but deploy_deployment_mode is Serverless",
        ),
        ({"deployment_mode": None}, {}, "cannot tell the deployment mode of medgo/medgo"),
        ({"deployment_mode": "Serverless"}, {"deployment_mode": "Standard"}, "runs in Serverless mode but"),
    ],
    ids=["standard-service-serverless-config", "no-mode", "serverless-service-standard-config"],
)
def test_a_rollout_the_mode_cannot_carry_fails_before_anything_is_written(
    cluster, tmp_path, site, config, message
):
    cluster.seed(cpu_site(**site))  # no controller: the mode comes from the annotation alone
    with pytest.raises(MedgoError, match=message):
        deploy(cluster, tmp_path, CONFIG.model_copy(update=config))
    assert cluster.written() == []


def test_modelmesh_is_refused(cluster, tmp_path):
    isvc = cpu_site(deployment_mode=None)
    isvc["metadata"]["annotations"] = {DEPLOYMENT_MODE_ANNOTATION: "ModelMesh"}
    cluster.seed(isvc)
    with pytest.raises(MedgoError, match="ModelMesh mode, which has no canary rollouts"):
        deploy(cluster, tmp_path)
    assert cluster.written() == []


@pytest.fixture
def kserve_before_0_20(kube, admin_api):
    """The cluster's InferenceService CRD without ``spec.canary``, as KServe < 0.20 installs it (restored after).

    The API server prunes fields a structural schema does not know, so such a cluster silently drops a
    canary: exactly what the deployer must detect."""
    ext = client.ApiextensionsV1Api(admin_api)
    name = f"{PLURAL}.{GROUP}"
    crd = json.loads(ext.read_custom_resource_definition(name, _preload_content=False).data)
    index = next(i for i, v in enumerate(crd["spec"]["versions"]) if v["name"] == VERSION)
    path = f"/spec/versions/{index}/schema/openAPIV3Schema/properties/spec/properties/canary"
    spec_schema = crd["spec"]["versions"][index]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    saved = spec_schema["properties"]["canary"]
    probe = build_inference_service(
        name="probe", namespace=NAMESPACE, storage_uri="s3://m/p", runtime="medgo-cpu"
    )
    probe["spec"]["canary"] = [standard_canary(probe["spec"]["predictor"], "c1", 0)]

    def canary_kept() -> bool:
        created = client.CustomObjectsApi(admin_api).create_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, PLURAL, probe, dry_run="All"
        )
        return "canary" in created["spec"]

    ext.patch_custom_resource_definition(name, [{"op": "remove", "path": path}])
    try:
        wait_until(lambda: not canary_kept(), timeout_s=30, what="spec.canary pruned")
        yield
    finally:
        ext.patch_custom_resource_definition(name, [{"op": "add", "path": path, "value": saved}])
        wait_until(canary_kept, timeout_s=30, what="spec.canary known again")


def test_standard_mode_on_a_kserve_without_spec_canary_fails_before_writing(
    cluster, tmp_path, kserve_before_0_20
):
    cluster.seed(cpu_site(deployment_mode="Standard"))
    with pytest.raises(MedgoError, match="predates spec.canary"):
        deploy(cluster, tmp_path, CONFIG.model_copy(update={"deployment_mode": "Standard"}))
    assert cluster.written() == []
    assert any("dryRun=All" in e["requestURI"] for e in cluster.events() if e["verb"] == "patch")


# -- helpers -------------------------------------------------------------------------------------------------
def test_canary_url_is_cluster_local():
    isvc = {
        "metadata": {"namespace": "medgo"},
        "status": {
            "components": {
                "predictor": {
                    "traffic": [
                        {"tag": "latest", "url": "http://latest-medgo-predictor.medgo.hospital.example"}
                    ]
                }
            }
        },
    }
    assert canary_url(isvc) == "http://latest-medgo-predictor.medgo.svc.cluster.local"
    assert cluster_local("http://127.0.0.1:8080", "medgo") == "http://127.0.0.1:8080"


def test_kfp_minio_uris_become_s3_for_kserve():
    assert kserve_storage_uri("minio://mlpipeline/v2/x") == "s3://mlpipeline/v2/x"
    assert kserve_storage_uri("s3://a/b") == "s3://a/b" and kserve_storage_uri("pvc://c/d") == "pvc://c/d"
