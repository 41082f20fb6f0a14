"""Fixtures of the Kubernetes tests: the real API server's clients and simulated controllers, and the
in-memory stand-in kept for what no server can give.

Most tests here run against the real kube-apiserver + etcd of ``tests/k8s/apiserver`` (session fixture
``kube_cluster`` in tests/conftest.py): the code under test talks as the pipeline's ServiceAccount, so RBAC
checks each call; the training operator, KServe's controller and the kubelet are simulated through the same
server (``tests/k8s/apiserver/controllers.py``).

:class:`FakeApiServer` is an in-memory stand-in behind the real ``kubernetes.client`` API classes. It is used
only where a test injects what a healthy server never answers (503 and 429 while polling).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

_CUSTOM_ITEM = "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}"
_CUSTOM_COLLECTION = "/apis/{group}/{version}/namespaces/{namespace}/{plural}"


class FakeApiServer:
    """The part of ``ApiClient`` that ``CustomObjectsApi`` uses for create and get, backed by a dict.

    ``failures`` maps (method, path template) to exceptions raised, in order, before serving normally.
    """

    client_side_validation = True

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str, str, str], dict] = {}
        self.failures: dict[tuple[str, str], list[ApiException]] = {}

    def select_header_accept(self, accepts: list[str]) -> str | None:
        return ", ".join(accepts) if accepts else None

    def select_header_content_type(self, content_types: list[str]) -> str:
        return client.ApiClient.select_header_content_type(self, content_types)

    def call_api(
        self,
        resource_path,
        method,
        path_params=None,
        query_params=None,
        header_params=None,
        body=None,
        post_params=None,
        files=None,
        response_type=None,
        auth_settings=None,
        async_req=None,
        _return_http_data_only=None,
        collection_formats=None,
        _preload_content=True,
        _request_timeout=None,
        _host=None,
    ):
        p = dict(path_params or {})
        pending = self.failures.get((method, resource_path))
        if pending:
            raise pending.pop(0)
        if (method, resource_path) == ("POST", _CUSTOM_COLLECTION):
            key = (p["group"], p["version"], p["namespace"], p["plural"], body["metadata"]["name"])
            if key in self.objects:
                raise ApiException(status=409, reason="AlreadyExists")
            self.objects[key] = copy.deepcopy(body)
            self.objects[key]["metadata"].update(namespace=p["namespace"], generation=1)
            data = copy.deepcopy(self.objects[key])
        elif (method, resource_path) == ("GET", _CUSTOM_ITEM):
            try:
                data = copy.deepcopy(
                    self.objects[(p["group"], p["version"], p["namespace"], p["plural"], p["name"])]
                )
            except KeyError:
                raise ApiException(status=404, reason="Not Found") from None
        else:
            raise AssertionError(f"the in-memory stand-in does not serve {method} {resource_path}")
        return data if _return_http_data_only else (data, 200, {})

    def set_status(
        self, group: str, version: str, namespace: str, plural: str, name: str, status: dict
    ) -> None:
        self.objects[(group, version, namespace, plural, name)]["status"] = copy.deepcopy(status)


class FakeClock:
    """Deterministic clock for wait loops: ``sleep`` advances time and runs the next scripted step.

    A step is a callable run after the n-th sleep; it plays the controller moving the object along.
    """

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self.steps: list[Callable[[], None]] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0, "wait loops must never busy-spin"
        self.now += seconds
        self.sleeps.append(seconds)
        if self.steps:
            self.steps.pop(0)()


@pytest.fixture
def server() -> FakeApiServer:
    return FakeApiServer()


@pytest.fixture
def custom_api(server: FakeApiServer) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client=server)


@pytest.fixture
def core_api(server: FakeApiServer) -> client.CoreV1Api:
    return client.CoreV1Api(api_client=server)


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


# -- the real API server -------------------------------------------------------------------------------
@pytest.fixture
def kube(kube_cluster):
    """The session's real API server, with namespace ``medgo`` emptied of jobs, services and pods."""
    kube_cluster.clean_namespace()
    yield kube_cluster
    kube_cluster.clean_namespace()


@pytest.fixture
def pipeline_api(kube):
    """An ApiClient authenticated as ``system:serviceaccount:medgo:medgo-pipeline`` (RBAC applies)."""
    with kube.pipeline_client() as api:
        yield api


@pytest.fixture
def admin_api(kube):
    """An ApiClient in ``system:masters`` (no RBAC), for setting up and inspecting."""
    with kube.admin_client() as api:
        yield api


@pytest.fixture
def change_signal():
    from tests.k8s.apiserver.controllers import ChangeSignal

    return ChangeSignal()


@pytest.fixture(scope="session")
def fake_kubelet(kube_cluster):
    from tests.k8s.apiserver.controllers import FakeKubelet

    kubelet = FakeKubelet(kube_cluster).start()
    yield kubelet
    kubelet.stop()


@pytest.fixture
def training_operator(kube, fake_kubelet, change_signal):
    """Start a simulated training operator: ``training_operator(outcomes, master_log=...)``."""
    from tests.k8s.apiserver.controllers import TrainingOperatorSim

    started = []

    def start(outcomes, master_log: str = ""):
        sim = TrainingOperatorSim(kube, fake_kubelet, change_signal, outcomes, master_log).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()


@pytest.fixture
def kserve_controller(kube, change_signal):
    """Start a simulated KServe controller: ``kserve_controller(canary_url, ready=True)``."""
    from tests.k8s.apiserver.controllers import KServeControllerSim

    started = []

    def start(canary_url: str, ready: bool = True):
        sim = KServeControllerSim(kube, change_signal, canary_url, ready).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()
