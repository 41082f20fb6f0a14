"""Fixtures of the Kubernetes tests: the real API server's clients and simulated controllers, and an
in-memory stand-in for what no healthy server gives on demand.

Most tests here run against the real kube-apiserver + etcd of ``tests/k8s/apiserver`` (session fixture
``kube_cluster`` in tests/conftest.py): the code under test talks as the pipeline's ServiceAccount, so RBAC
checks each call; the training operator, KServe's controller and the kubelet are simulated through the same
server (``tests/k8s/apiserver/controllers.py``).

:class:`FakeApiServer` is an in-memory stand-in behind the real ``kubernetes.client`` API classes (it takes
the place of ``ApiClient``, the HTTP layer). It is used where a test injects what a healthy server never
answers on demand: 503/429 while polling, a watch connection dropped mid-stream, a resourceVersion compacted
away (410 Gone), an API gone for minutes, and pod states the scheduler and kubelet would write (Unschedulable,
image pull back-off, OOMKilled, crash loops) on a fake clock. It keeps objects in a dict and answers like the
API server does for the calls medgo makes: 409 on a duplicate create, 404 on a missing object, RFC 7386 merge
patches that bump ``metadata.generation`` when the spec changes, label-selector pod listing and pod logs,
and watches: every change gets the next global ``resourceVersion`` and is logged as an event; a watch streams
the events after the ``resourceVersion`` it asks for (``410 Gone`` once compacted away, see ``compact``) and,
when there are none yet, holds the connection as a real server would, calling ``on_idle_watch(timeout)``
(wired to the fake clock, whose scripted steps play the operator). Hooks stand in for admission webhooks that
add defaults (``defaulters``) and operators that write status after a change (``controllers``).
"""

from __future__ import annotations

import copy
import itertools
import json
from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

_CUSTOM_ITEM = "/apis/{group}/{version}/namespaces/{namespace}/{plural}/{name}"
_CUSTOM_COLLECTION = "/apis/{group}/{version}/namespaces/{namespace}/{plural}"
_PODS = "/api/v1/namespaces/{namespace}/pods"
_POD_LOG = "/api/v1/namespaces/{namespace}/pods/{name}/log"


def json_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386: objects merge recursively, ``null`` removes a key, anything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = json_merge_patch(result.get(key), value)
    return result


class FakeApiServer:
    """Implements the part of ``ApiClient`` that generated API classes use, backed by dicts."""

    client_side_validation = True

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str, str, str, str], dict] = {}
        self.pods: dict[tuple[str, str], client.V1Pod] = {}
        self.pod_logs: dict[tuple[str, str, str], str] = {}
        self.requests: list[dict[str, Any]] = []
        #: plural -> function(obj) mutating a stored object on create/patch, like a defaulting webhook.
        self.defaulters: dict[str, Callable[[dict], None]] = {}
        #: plural -> function(obj) run on the stored object after each create/patch, like an operator reconciling.
        self.controllers: dict[str, Callable[[dict], None]] = {}
        #: (method, path template) -> exceptions to raise, in order, before serving normally.
        self.failures: dict[tuple[str, str], list[ApiException]] = {}
        self._uids = itertools.count(1)
        self._rv = itertools.count(1)
        #: (resourceVersion, type, key, object) of every change to a custom object, oldest first.
        self.events: list[tuple[int, str, tuple, dict]] = []
        self.compacted_before = 0
        #: Called with the watch's timeout when a watch finds no event to send (the server holds it).
        self.on_idle_watch: Callable[[float], None] = lambda seconds: None
        #: Exceptions a watch stream raises mid-way (a dropped connection), in order.
        self.watch_breaks: list[BaseException] = []

    # -- ApiClient interface ------------------------------------------------------------------------
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
        params = dict(path_params or {})
        query = dict(query_params or [])
        headers = dict(header_params or {})
        self.requests.append(
            {
                "method": method,
                "path": resource_path,
                "params": params,
                "query": query,
                "headers": headers,
                "body": copy.deepcopy(body),
            }
        )
        pending = self.failures.get((method, resource_path))
        if pending:
            raise pending.pop(0)
        handler = getattr(self, f"_{method.lower()}_{_ROUTES[resource_path]}", None)
        if handler is None:
            raise AssertionError(f"fake API server does not serve {method} {resource_path}")
        data = handler(params, query, headers, body)
        return data if _return_http_data_only else (data, 200, {})

    # -- custom objects -----------------------------------------------------------------------------
    @staticmethod
    def _key(p: dict) -> tuple[str, str, str, str, str]:
        return p["group"], p["version"], p["namespace"], p["plural"], p["name"]

    def _stored(self, p: dict) -> dict:
        try:
            return self.objects[self._key(p)]
        except KeyError:
            raise ApiException(status=404, reason="Not Found") from None

    def _post_custom_collection(self, p, query, headers, body):
        meta = body.get("metadata") or {}
        if meta.get("namespace") not in (None, p["namespace"]):
            raise ApiException(status=400, reason="BadRequest: namespace of body does not match path")
        key = self._key({**p, "name": meta["name"]})
        if key in self.objects:
            raise ApiException(status=409, reason="AlreadyExists")
        obj = copy.deepcopy(body)
        obj["metadata"].update(namespace=p["namespace"], uid=f"uid-{next(self._uids)}", generation=1)
        if p["plural"] in self.defaulters:
            self.defaulters[p["plural"]](obj)
        self._record("ADDED", key, obj)
        self.objects[key] = obj
        self._reconcile(p["plural"], obj)
        return copy.deepcopy(obj)

    def _record(self, event_type: str, key: tuple, obj: dict) -> None:
        rv = next(self._rv)
        obj["metadata"]["resourceVersion"] = str(rv)
        self.events.append((rv, event_type, key, copy.deepcopy(obj)))

    def _get_custom_item(self, p, query, headers, body):
        return copy.deepcopy(self._stored(p))

    def _get_custom_collection(self, p, query, headers, body):
        if query.get("watch"):
            return self._watch(p, query)
        name = (query.get("fieldSelector") or "").removeprefix("metadata.name=") or None
        items = [
            copy.deepcopy(o)
            for (g, v, ns, pl, n), o in self.objects.items()
            if (g, v, ns, pl) == (p["group"], p["version"], p["namespace"], p["plural"]) and name in (None, n)
        ]
        latest = str(self.events[-1][0]) if self.events else str(self.compacted_before)
        return {
            "apiVersion": f"{p['group']}/{p['version']}",
            "kind": "List",
            "metadata": {"resourceVersion": latest},
            "items": items,
        }

    def _patch_custom_item(self, p, query, headers, body):
        if headers.get("Content-Type") != "application/merge-patch+json":
            raise ApiException(status=415, reason=f"UnsupportedMediaType {headers.get('Content-Type')}")
        current = self._stored(p)
        patched = json_merge_patch(current, body)
        if p["plural"] in self.defaulters:
            self.defaulters[p["plural"]](patched)
        if patched.get("spec") != current.get("spec"):
            patched["metadata"]["generation"] = current["metadata"]["generation"] + 1
        self._record("MODIFIED", self._key(p), patched)
        self.objects[self._key(p)] = patched
        self._reconcile(p["plural"], patched)
        return copy.deepcopy(patched)

    def _reconcile(self, plural: str, obj: dict) -> None:
        if plural in self.controllers:
            self.controllers[plural](obj)

    def _delete_custom_item(self, p, query, headers, body):
        obj = self._stored(p)
        del self.objects[self._key(p)]
        self._record("DELETED", self._key(p), obj)
        return {"kind": "Status", "status": "Success", "details": {"name": obj["metadata"]["name"]}}

    def _watch(self, p, query):
        since = int(query.get("resourceVersion") or 0)
        name = (query.get("fieldSelector") or "").removeprefix("metadata.name=") or None
        collection = (p["group"], p["version"], p["namespace"], p["plural"])

        def pending():
            return [
                {"type": t, "object": copy.deepcopy(o)}
                for rv, t, key, o in self.events
                if rv > since and key[:4] == collection and (name is None or key[4] == name)
            ]

        if since and since < self.compacted_before:  # events up to compacted_before are gone
            return FakeWatchResponse(
                [
                    {
                        "type": "ERROR",
                        "object": {"kind": "Status", "code": 410, "message": "too old resource version"},
                    }
                ]
            )
        events = pending()
        if not events:
            self.on_idle_watch(float(query.get("timeoutSeconds") or 0))
            events = pending()
        failure = self.watch_breaks.pop(0) if self.watch_breaks else None
        return FakeWatchResponse(events, failure)

    def compact(self) -> None:
        """Forget every event so far, as etcd compaction does: older resourceVersions get 410 Gone."""
        self.compacted_before = self.events[-1][0] if self.events else 0
        self.events.clear()

    # -- pods ---------------------------------------------------------------------------------------
    def _get_pods(self, p, query, headers, body):
        wanted = dict(term.split("=", 1) for term in query.get("labelSelector", "").split(",") if term)
        items = [
            pod
            for (ns, _), pod in sorted(self.pods.items())
            if ns == p["namespace"] and wanted.items() <= (pod.metadata.labels or {}).items()
        ]
        return client.V1PodList(items=items)

    def _get_pod_log(self, p, query, headers, body):
        if (p["namespace"], p["name"]) not in self.pods:
            raise ApiException(status=404, reason="Not Found")
        text = self.pod_logs.get((p["namespace"], p["name"], query.get("container")), "")
        if "tailLines" in query:
            text = "".join(text.splitlines(keepends=True)[-int(query["tailLines"]) :])
        return text

    # -- test helpers -------------------------------------------------------------------------------
    def add_pod(
        self,
        namespace: str,
        name: str,
        labels: dict[str, str],
        logs: dict[str, str] | None = None,
        status: dict | None = None,
        memory_limit: str | None = None,
    ) -> None:
        """A pod with optional ``status`` (the kubelet's/scheduler's, as a dict in the API's JSON shape)."""
        api = client.ApiClient()
        self.pods[(namespace, name)] = client.V1Pod(
            metadata=client.V1ObjectMeta(name=name, namespace=namespace, labels=labels),
            spec=client.V1PodSpec(
                containers=[
                    client.V1Container(
                        name="pytorch",
                        resources=client.V1ResourceRequirements(
                            limits={"memory": memory_limit} if memory_limit else None
                        ),
                    )
                ]
            ),
            status=api._ApiClient__deserialize(status or {"phase": "Running"}, "V1PodStatus"),
        )
        for container, text in (logs or {}).items():
            self.pod_logs[(namespace, name, container)] = text

    def get(self, group: str, version: str, namespace: str, plural: str, name: str) -> dict:
        return self.objects[(group, version, namespace, plural, name)]

    def set_status(
        self, group: str, version: str, namespace: str, plural: str, name: str, status: dict
    ) -> None:
        """Replace an object's status, as its controller would (status changes never bump generation)."""
        key = (group, version, namespace, plural, name)
        self.objects[key]["status"] = copy.deepcopy(status)
        self._record("MODIFIED", key, self.objects[key])

    def calls(self, method: str) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["method"] == method]

    def rbac_requests(self) -> set[tuple[str, str, str]]:
        """Every request as the RBAC check the API server would make: (apiGroup, resource, verb)."""
        seen = set()
        for r in self.requests:
            p, template = r["params"], r["path"]
            if template in (_CUSTOM_ITEM, _CUSTOM_COLLECTION):
                group, resource = p["group"], p["plural"]
            else:
                group, resource = "", "pods/log" if template == _POD_LOG else "pods"
            item = template in (_CUSTOM_ITEM, _POD_LOG)
            read = "get" if item else ("watch" if r["query"].get("watch") else "list")
            verb = {"POST": "create", "PATCH": "patch", "DELETE": "delete", "GET": read}[r["method"]]
            seen.add((group, resource, verb))
        return seen


class FakeWatchResponse:
    """What ``_preload_content=False`` returns for a watch: a stream of JSON lines, one event each.

    With ``failure``, the stream sends the first event (if any) and then raises it, like a connection
    that drops mid-watch.
    """

    def __init__(self, events: list[dict], failure: BaseException | None = None):
        self.events, self.failure = events, failure
        self.closed = False

    def stream(self, amt=None, decode_content=False):
        for i, event in enumerate(self.events):
            if self.failure is not None and i == 1:
                raise self.failure
            yield (json.dumps(event) + "\n").encode()
        if self.failure is not None and len(self.events) <= 1:
            raise self.failure

    def close(self):
        self.closed = True

    def release_conn(self):
        pass


_ROUTES = {
    _CUSTOM_ITEM: "custom_item",
    _CUSTOM_COLLECTION: "custom_collection",
    _PODS: "pods",
    _POD_LOG: "pod_log",
}


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
def server(fake_clock) -> FakeApiServer:
    """The stand-in; a watch with nothing to send holds for its timeout on the fake clock."""
    fake = FakeApiServer()
    fake.on_idle_watch = fake_clock.sleep
    return fake


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


@pytest.fixture
def trainer_v2(kube, fake_kubelet, change_signal):
    """Start a simulated Kubeflow Trainer v2: ``trainer_v2(outcomes, master_log=...)``."""
    from tests.k8s.apiserver.controllers import TrainerV2Sim

    started = []

    def start(outcomes, master_log: str = ""):
        sim = TrainerV2Sim(kube, fake_kubelet, change_signal, outcomes, master_log).start()
        started.append(sim)
        return sim

    yield start
    for sim in started:
        sim.stop()
