"""Stand-ins for the controllers a real cluster runs, driven by real watch events from the test API server.

The fixture's cluster runs no training operator, no KServe controller, no kubelet. Tests that need one play
it here, as the admin, through the API server:

* :class:`ObjectWatch` -- a watch on one kind, resumed from its last ``resourceVersion`` when the
  connection breaks (tests break it on purpose with :meth:`ObjectWatch.break_connection`);
* :class:`TrainingOperatorSim` -- on a new PyTorchJob creates its master pod and moves the job through
  ``Created`` → ``Running`` → an outcome, writing ``status`` through the status subresource;
* :class:`KServeControllerSim` -- on each new generation of an InferenceService writes the status KServe
  would (``observedGeneration``, ``Ready``, revisions, traffic with the ``latest`` tag's URL);
* :class:`FakeKubelet` -- a Node whose kubelet address is a small HTTPS server on 127.0.0.1 serving
  container logs, so ``pods/log`` requests go through the real API server's proxy path;
* :class:`DefaultingWebhook` -- a mutating admission webhook on 127.0.0.1 the API server calls, playing an
  operator's defaulting webhook;
* :class:`ChangeSignal` -- wakes a waiting launcher when a simulated controller wrote something, so its
  wait loop runs on real time without fixed sleeps.
"""

from __future__ import annotations

import base64
import copy
import datetime
import http.server
import json
import ssl
import threading
import time
import urllib.parse
from collections.abc import Callable
from typing import Any

from kubernetes import client
from kubernetes.watch.watch import iter_resp_lines

from medgo.k8s._common import Poller

from .cluster import NAMESPACE, KubeCluster, wait_until

PYTORCHJOB = ("kubeflow.org", "v1", "pytorchjobs")
INFERENCESERVICE = ("serving.kserve.io", "v1beta1", "inferenceservices")
JOB_NAME_LABEL = "training.kubeflow.org/job-name"
REPLICA_TYPE_LABEL = "training.kubeflow.org/replica-type"


def now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ChangeSignal:
    """Counts writes by simulated controllers; :meth:`sleep` is a ``Poller`` sleep that returns early on one.

    ``sleep(s)`` returns at once if a write happened since the previous ``sleep`` returned (so a write
    between the waiter's GET and its sleep is never missed), else when the next write happens or after
    ``s`` seconds.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._count = 0
        self._seen = 0

    def notify(self) -> None:
        with self._cond:
            self._count += 1
            self._cond.notify_all()

    def sleep(self, seconds: float) -> None:
        with self._cond:
            self._cond.wait_for(lambda: self._count != self._seen, timeout=seconds)
            self._seen = self._count

    def poller(self) -> Poller:
        return Poller(clock=time.monotonic, sleep=self.sleep)


class ObjectWatch(threading.Thread):
    """Watch one custom resource in ``namespace`` and call ``handle(event_type, obj)`` for each event.

    Lists first (existing objects arrive as ``ADDED``), then watches from the list's ``resourceVersion``;
    when the connection ends or breaks, watches again from the last ``resourceVersion`` it saw, so no
    change is lost; a ``410 Gone`` (too old) lists again. Exceptions from ``handle`` are kept in
    ``errors`` and re-raised by :meth:`stop`.
    """

    def __init__(
        self,
        api: client.ApiClient,
        kind: tuple[str, str, str],
        handle: Callable[[str, dict], None],
        namespace: str = NAMESPACE,
    ):
        super().__init__(daemon=True, name=f"watch-{kind[2]}")
        self.custom = client.CustomObjectsApi(api)
        self.kind, self.namespace, self.handle = kind, namespace, handle
        self.connections = 0
        self.events: list[tuple[str, str]] = []
        self.errors: list[BaseException] = []
        self.listed = threading.Event()
        self._stopped = threading.Event()
        self._may_connect = threading.Event()
        self._may_connect.set()
        self._resp = None
        self._lock = threading.Lock()
        self._rv = ""

    def start(self) -> ObjectWatch:
        super().start()
        if not self.listed.wait(timeout=30):
            raise TimeoutError(f"watch on {self.kind[2]} did not list within 30s: {self.errors}")
        return self

    def _list(self) -> None:
        listing = self.custom.list_namespaced_custom_object(*self.kind[:2], self.namespace, self.kind[2])
        self._rv = listing["metadata"]["resourceVersion"]
        for obj in listing["items"]:
            self._dispatch("ADDED", obj)

    def _dispatch(self, event_type: str, obj: dict) -> None:
        self.events.append((event_type, obj["metadata"]["name"]))
        try:
            self.handle(event_type, obj)
        except client.exceptions.ApiException as exc:
            if exc.status != 404:  # like a real controller: an object deleted meanwhile needs nothing more
                self.errors.append(exc)
        except Exception as exc:  # noqa: BLE001 - surfaced by stop()
            self.errors.append(exc)

    def run(self) -> None:
        try:
            self._list()
        except Exception as exc:  # noqa: BLE001
            self.errors.append(exc)
            return
        finally:
            self.listed.set()
        while not self._stopped.is_set():
            self._may_connect.wait()
            if self._stopped.is_set():
                break
            try:
                resp = self.custom.list_namespaced_custom_object(
                    *self.kind[:2],
                    self.namespace,
                    self.kind[2],
                    watch=True,
                    resource_version=self._rv,
                    allow_watch_bookmarks=True,
                    timeout_seconds=600,
                    _preload_content=False,
                )
            except Exception as exc:  # noqa: BLE001
                if not self._stopped.is_set():
                    self.errors.append(exc)
                return
            with self._lock:
                self._resp = resp
                self.connections += 1
            try:
                for line in iter_resp_lines(resp):
                    event = json.loads(line)
                    obj = event["object"]
                    if event["type"] == "ERROR":
                        if obj.get("code") == 410:
                            self._list()
                            break
                        raise RuntimeError(f"watch error: {obj}")
                    self._rv = obj["metadata"]["resourceVersion"]
                    if event["type"] != "BOOKMARK":
                        self._dispatch(event["type"], obj)
            except Exception as exc:  # noqa: BLE001 - a broken connection: watch again from self._rv
                if not self._stopped.is_set() and not _is_connection_error(exc):
                    self.errors.append(exc)
            finally:
                with self._lock:
                    self._resp = None
                resp.release_conn()

    def is_connected(self) -> bool:
        with self._lock:
            return self._resp is not None

    def break_connection(self, hold: bool = False) -> None:
        """Close the watch's TCP connection now; with ``hold``, reconnect only after :meth:`reconnect`."""
        if hold:
            self._may_connect.clear()
        with self._lock:
            resp = self._resp
        if resp is not None:
            resp.shutdown()

    def reconnect(self) -> None:
        self._may_connect.set()

    def stop(self) -> None:
        self._stopped.set()
        self._may_connect.set()
        self.break_connection()
        self.join(timeout=10)
        if self.errors:
            raise AssertionError(f"simulated controller on {self.kind[2]} failed: {self.errors!r}")


def _is_connection_error(exc: BaseException) -> bool:
    import urllib3

    return isinstance(exc, (urllib3.exceptions.HTTPError, OSError, ValueError))


class FakeKubelet:
    """A Node named ``name`` whose kubelet is an HTTPS server on 127.0.0.1 serving ``/containerLogs``.

    The API server answers ``pods/log`` by connecting to the pod's node's kubelet (address and port from
    the Node's status, certificate checked against the test CA); this server plays that kubelet and
    serves the text put in :attr:`logs` under ``(namespace, pod, container)``.
    """

    def __init__(self, cluster: KubeCluster, name: str = "medgo-sim-node"):
        self.cluster, self.name = cluster, name
        self.logs: dict[tuple[str, str, str], str] = {}
        self.requests: list[str] = []
        cert, key = cluster.pki.issue_serving_cert(cluster.workdir, "kubelet")
        logs, requests = self.logs, self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's naming
                url = urllib.parse.urlsplit(self.path)
                requests.append(self.path)
                parts = url.path.strip("/").split("/")
                if len(parts) != 4 or parts[0] != "containerLogs" or tuple(parts[1:]) not in logs:
                    self.send_error(404)
                    return
                text = logs[tuple(parts[1:])]
                tail = urllib.parse.parse_qs(url.query).get("tailLines")
                if tail:
                    text = "".join(text.splitlines(keepends=True)[-int(tail[0]) :])
                body = text.encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="fake-kubelet")

    def start(self) -> FakeKubelet:
        self._thread.start()
        with self.cluster.admin_client() as api:
            core = client.CoreV1Api(api)
            core.create_node(
                {"metadata": {"name": self.name, "labels": {"kubernetes.io/hostname": self.name}}}
            )
            core.patch_node_status(
                self.name,
                {
                    "status": {
                        "addresses": [{"type": "InternalIP", "address": "127.0.0.1"}],
                        "daemonEndpoints": {"kubeletEndpoint": {"Port": self.port}},
                        "conditions": [
                            {
                                "type": "Ready",
                                "status": "True",
                                "reason": "KubeletReady",
                                "lastHeartbeatTime": now(),
                                "lastTransitionTime": now(),
                            }
                        ],
                    }
                },
            )
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        with self.cluster.admin_client() as api:
            client.CoreV1Api(api).delete_node(self.name)


def _condition(type_: str, reason: str = "", message: str = "") -> dict[str, Any]:
    return {
        "type": type_,
        "status": "True",
        "reason": reason or f"PyTorchJob{type_}",
        "message": message or f"PyTorchJob is {type_.lower()}.",
        "lastUpdateTime": now(),
        "lastTransitionTime": now(),
    }


class TrainingOperatorSim:
    """Plays Kubeflow's training operator for PyTorchJobs, event by event.

    Each new job (an ``ADDED`` event; a job re-created under the same name is a new one) takes the next
    entry of ``outcomes`` (the last one repeats): a condition dict such as ``{"type": "Succeeded"}`` or
    ``{"type": "Failed", "reason": ..., "message": ...}``, ``None`` (stays Running), or ``"delete"`` (the
    job is deleted once Running, as if someone removed it underneath the launcher). The operator creates
    the job's master pod from the Master template (bound to ``kubelet``'s node, its ``pytorch`` log set to
    ``master_log``), then writes ``Created``, ``Running`` and the outcome, each step after the watch
    delivered the previous one. Only the master pod is created: the launcher reads only its log.
    """

    def __init__(
        self,
        cluster: KubeCluster,
        kubelet: FakeKubelet,
        signal: ChangeSignal,
        outcomes: list[dict[str, Any] | str | None],
        master_log: str = "",
    ):
        self.cluster, self.kubelet, self.signal = cluster, kubelet, signal
        self.outcomes, self.master_log = list(outcomes), master_log
        self.api = cluster.admin_client()
        self.custom, self.core = client.CustomObjectsApi(self.api), client.CoreV1Api(self.api)
        self.attempts: dict[str, list[str]] = {}  # job name -> uids seen, in order
        self._plans: dict[str, list[Any]] = {}  # uid -> status steps still to write
        self.watch = ObjectWatch(self.api, PYTORCHJOB, self._on_event)

    def start(self) -> TrainingOperatorSim:
        self.watch.start()
        return self

    def stop(self) -> None:
        try:
            self.watch.stop()
        finally:
            self.api.close()

    def _on_event(self, event_type: str, job: dict) -> None:
        meta = job["metadata"]
        name, uid = meta["name"], meta["uid"]
        if event_type == "DELETED":
            self._plans.pop(uid, None)
            self.core.delete_collection_namespaced_pod(
                NAMESPACE, label_selector=f"{JOB_NAME_LABEL}={name}", grace_period_seconds=0
            )
            self.signal.notify()
            return
        if uid not in self._plans:
            if event_type != "ADDED":
                return
            uids = self.attempts.setdefault(name, [])
            uids.append(uid)
            outcome = self.outcomes[min(len(uids), len(self.outcomes)) - 1] if self.outcomes else None
            self._create_master_pod(job)
            self._plans[uid] = [
                [_condition("Created")],
                [_condition("Created"), _condition("Running")],
                outcome,
            ]
        plan = self._plans[uid]
        if not plan:
            return
        step = plan.pop(0)
        if step is None:
            return
        if step == "delete":
            self.custom.delete_namespaced_custom_object(*PYTORCHJOB[:2], NAMESPACE, PYTORCHJOB[2], name)
            return
        if isinstance(step, dict):  # the outcome: Running stays True only while running
            step = [
                _condition("Created"),
                {**_condition("Running"), "status": "False"},
                _condition(step["type"], step.get("reason", ""), step.get("message", "")),
            ]
        status = {"conditions": step, "replicaStatuses": {"Master": {"active": 0 if len(step) > 2 else 1}}}
        if step[-1]["type"] in ("Succeeded", "Failed"):
            status["completionTime"] = now()
            status["replicaStatuses"]["Master"] = {"active": 0, step[-1]["type"].lower(): 1}
        self.custom.patch_namespaced_custom_object_status(
            *PYTORCHJOB[:2], NAMESPACE, PYTORCHJOB[2], name, {"status": status}
        )
        self.signal.notify()

    def _create_master_pod(self, job: dict) -> None:
        name = job["metadata"]["name"]
        template = copy.deepcopy(job["spec"]["pytorchReplicaSpecs"]["Master"]["template"])
        pod_name = f"{name}-master-0"
        labels = {
            **(template.get("metadata") or {}).get("labels", {}),
            JOB_NAME_LABEL: name,
            REPLICA_TYPE_LABEL: "master",
            "training.kubeflow.org/replica-index": "0",
        }
        spec = template["spec"]
        spec["nodeName"] = self.kubelet.name
        spec["restartPolicy"] = "OnFailure"
        pod = {
            "metadata": {
                "name": pod_name,
                "namespace": NAMESPACE,
                "labels": labels,
                "ownerReferences": [
                    {
                        "apiVersion": "kubeflow.org/v1",
                        "kind": "PyTorchJob",
                        "name": name,
                        "uid": job["metadata"]["uid"],
                        "controller": True,
                    }
                ],
            },
            "spec": spec,
        }
        wait_until(
            lambda: (
                not self.core.list_namespaced_pod(NAMESPACE, field_selector=f"metadata.name={pod_name}").items
            ),
            timeout_s=10,
            what=f"old pod {pod_name} gone",
        )
        self.core.create_namespaced_pod(NAMESPACE, pod)
        self.kubelet.logs[(NAMESPACE, pod_name, "pytorch")] = self.master_log


class KServeControllerSim:
    """Plays KServe's controller (serverless mode) for InferenceServices, event by event.

    On each generation it has not yet observed, it writes the status KServe would: ``observedGeneration``,
    the ``Ready`` condition (``ready`` decides), the predictor's revisions and traffic, and URLs. A new
    revision ``<name>-predictor-0000N`` is created when the predictor spec changes other than in
    ``canaryTrafficPercent`` (traffic-only changes move traffic, like Knative). Without a canary share the
    new revision is rolled out to all traffic; with one it gets that share, tagged ``latest`` at
    ``canary_url``, and the previously rolled-out revision keeps the rest (tag ``prev``).
    """

    def __init__(self, cluster: KubeCluster, signal: ChangeSignal, canary_url: str, ready: bool = True):
        self.cluster, self.signal, self.canary_url, self.ready = cluster, signal, canary_url, ready
        self.api = cluster.admin_client()
        self.custom = client.CustomObjectsApi(self.api)
        self._state: dict[str, dict[str, Any]] = {}  # uid -> revisions bookkeeping
        self.watch = ObjectWatch(self.api, INFERENCESERVICE, self._on_event)

    def start(self) -> KServeControllerSim:
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
        meta, status = isvc["metadata"], isvc.get("status") or {}
        if status.get("observedGeneration") == meta["generation"]:
            return
        name, namespace = meta["name"], meta["namespace"]
        predictor = copy.deepcopy(isvc["spec"]["predictor"])
        canary = predictor.pop("canaryTrafficPercent", None)
        state = self._state.setdefault(meta["uid"], {"revision": 0, "spec": None, "rolled_out": None})
        if predictor != state["spec"]:
            state["revision"] += 1
            state["spec"] = predictor
        latest = f"{name}-predictor-{state['revision']:05d}"
        host = f"{name}.{namespace}.example.com"
        previous = state["rolled_out"]
        if self.ready and (canary is None or previous is None or previous == latest):
            state["rolled_out"] = latest
            share = 100
        else:
            share = canary if self.ready else 0
        traffic = [
            {
                "tag": "latest",
                "revisionName": latest,
                "percent": share,
                "latestRevision": True,
                "url": self.canary_url,
            }
        ]
        if share < 100 and previous:
            traffic.append(
                {
                    "tag": "prev",
                    "revisionName": previous,
                    "percent": 100 - share,
                    "latestRevision": False,
                    "url": f"http://prev-{name}-predictor.{namespace}.example.com",
                }
            )
        ready = {"type": "Ready", "status": "True" if self.ready else "False", "lastTransitionTime": now()}
        if not self.ready:
            ready.update(reason="RevisionMissing", message=f"Revision {latest} failed: container exited")
        predictor_status = {"latestCreatedRevision": latest, "traffic": traffic, "url": f"http://{host}"}
        if self.ready:
            predictor_status["latestReadyRevision"] = latest
        elif previous:
            predictor_status["latestReadyRevision"] = previous
        if state["rolled_out"]:
            predictor_status["latestRolledoutRevision"] = state["rolled_out"]
        body = {
            "status": {
                "observedGeneration": meta["generation"],
                "url": f"http://{host}",
                "address": {"url": f"http://{name}.{namespace}.svc.cluster.local"},
                "conditions": [ready],
                "components": {"predictor": predictor_status},
            }
        }
        self.custom.patch_namespaced_custom_object_status(
            *INFERENCESERVICE[:2], namespace, INFERENCESERVICE[2], name, body
        )
        self.signal.notify()


class DefaultingWebhook:
    """A mutating admission webhook on 127.0.0.1 that the API server calls on every create and update of
    ``kind``, playing an operator's defaulting webhook (KServe's adds e.g. ``protocolVersion``).

    ``defaults(obj)`` returns the JSON-patch operations to apply. :meth:`start` registers a
    ``MutatingWebhookConfiguration`` and returns once a server-side dry-run shows the webhook in effect
    for ``probe`` (an object of ``kind``); :meth:`stop` removes it the same way.
    """

    def __init__(
        self,
        cluster: KubeCluster,
        kind: tuple[str, str, str],
        defaults: Callable[[dict], list[dict]],
        probe: dict,
        name: str = "medgo-test-defaulter",
    ):
        self.cluster, self.kind, self.defaults, self.probe, self.name = cluster, kind, defaults, probe, name
        self.reviews: list[str] = []
        cert, key = cluster.pki.issue_serving_cert(cluster.workdir, "webhook")
        webhook = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                review = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                request = review["request"]
                webhook.reviews.append(request["operation"])
                patch = webhook.defaults(request["object"])
                response = {"uid": request["uid"], "allowed": True}
                if patch:
                    response.update(
                        patchType="JSONPatch", patch=base64.b64encode(json.dumps(patch).encode()).decode()
                    )
                body = json.dumps(
                    {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}
                ).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(str(cert), str(key))
        self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="webhook")

    def start(self) -> DefaultingWebhook:
        self._thread.start()
        group, version, plural = self.kind
        config = {
            "apiVersion": "admissionregistration.k8s.io/v1",
            "kind": "MutatingWebhookConfiguration",
            "metadata": {"name": self.name},
            "webhooks": [
                {
                    "name": f"{plural}.defaulter.medgo.test",
                    "clientConfig": {
                        "url": f"https://127.0.0.1:{self.server.server_address[1]}/mutate",
                        "caBundle": base64.b64encode(self.cluster.ca_file.read_bytes()).decode(),
                    },
                    "rules": [
                        {
                            "apiGroups": [group],
                            "apiVersions": [version],
                            "operations": ["CREATE", "UPDATE"],
                            "resources": [plural],
                            "scope": "Namespaced",
                        }
                    ],
                    "sideEffects": "None",
                    "admissionReviewVersions": ["v1"],
                    "failurePolicy": "Fail",
                    "timeoutSeconds": 5,
                }
            ],
        }
        with self.cluster.admin_client() as api:
            client.AdmissionregistrationV1Api(api).create_mutating_webhook_configuration(config)
            wait_until(lambda: self._in_effect(api), timeout_s=30, what=f"webhook {self.name} in effect")
        return self

    def _in_effect(self, api: client.ApiClient) -> bool:
        group, version, plural = self.kind
        created = client.CustomObjectsApi(api).create_namespaced_custom_object(
            group, version, NAMESPACE, plural, copy.deepcopy(self.probe), dry_run="All"
        )
        return not self.defaults(created)  # nothing left to default: the webhook ran

    def stop(self) -> None:
        with self.cluster.admin_client() as api:
            client.AdmissionregistrationV1Api(api).delete_mutating_webhook_configuration(self.name)
            wait_until(lambda: not self._in_effect(api), timeout_s=30, what=f"webhook {self.name} removed")
        self.server.shutdown()
        self.server.server_close()


TRAINJOB = ("trainer.kubeflow.org", "v1alpha1", "trainjobs")
JOBSET_NAME_LABEL = "jobset.sigs.k8s.io/jobset-name"


class TrainerV2Sim:
    """Plays Kubeflow Trainer v2 (with its JobSet controller) for TrainJobs, event by event.

    Each new TrainJob takes the next entry of ``outcomes`` (the last one repeats): a condition dict such as
    ``{"type": "Complete"}`` or ``{"type": "Failed", "reason": ..., "message": ...}``, or ``None`` (stays
    running). It creates the node-0 pod the way the ``torch-distributed`` runtime would (container ``node``
    with the TrainJob's image and command, the JobSet labels, completion index 0, bound to ``kubelet``'s node,
    its log set to ``master_log``), then writes ``Created`` and the outcome through the status subresource.
    """

    def __init__(self, cluster, kubelet: FakeKubelet, signal: ChangeSignal, outcomes, master_log: str = ""):
        self.kubelet, self.signal = kubelet, signal
        self.outcomes, self.master_log = list(outcomes), master_log
        self.api = cluster.admin_client()
        self.custom, self.core = client.CustomObjectsApi(self.api), client.CoreV1Api(self.api)
        self.attempts: dict[str, list[str]] = {}
        self._plans: dict[str, list[Any]] = {}
        self.watch = ObjectWatch(self.api, TRAINJOB, self._on_event)

    def start(self) -> TrainerV2Sim:
        self.watch.start()
        return self

    def stop(self) -> None:
        try:
            self.watch.stop()
        finally:
            self.api.close()

    def _on_event(self, event_type: str, job: dict) -> None:
        meta = job["metadata"]
        name, uid = meta["name"], meta["uid"]
        if event_type == "DELETED":
            self._plans.pop(uid, None)
            self.core.delete_collection_namespaced_pod(
                NAMESPACE, label_selector=f"{JOBSET_NAME_LABEL}={name}", grace_period_seconds=0
            )
            self.signal.notify()
            return
        if uid not in self._plans:
            if event_type != "ADDED":
                return
            uids = self.attempts.setdefault(name, [])
            uids.append(uid)
            outcome = self.outcomes[min(len(uids), len(self.outcomes)) - 1] if self.outcomes else None
            self._create_node_pod(job)
            self._plans[uid] = [[_condition("Created")], outcome]
        plan = self._plans[uid]
        if not plan:
            return
        step = plan.pop(0)
        if step is None:
            return
        if isinstance(step, dict):
            step = [
                _condition("Created"),
                _condition(step["type"], step.get("reason", ""), step.get("message", "")),
            ]
        self.custom.patch_namespaced_custom_object_status(
            *TRAINJOB[:2], NAMESPACE, TRAINJOB[2], name, {"status": {"conditions": step}}
        )
        self.signal.notify()

    def _create_node_pod(self, job: dict) -> None:
        name, trainer = job["metadata"]["name"], job["spec"]["trainer"]
        (override,) = job["spec"].get("podSpecOverrides") or [{}]
        pod_name = f"{name}-node-0-0"
        pod = {
            "metadata": {
                "name": pod_name,
                "namespace": NAMESPACE,
                "labels": {
                    JOBSET_NAME_LABEL: name,
                    "jobset.sigs.k8s.io/replicatedjob-name": "node",
                    "batch.kubernetes.io/job-completion-index": "0",
                },
            },
            "spec": {
                "nodeName": self.kubelet.name,
                "serviceAccountName": override.get("serviceAccountName", "default"),
                "automountServiceAccountToken": False,
                "containers": [
                    {
                        "name": "node",
                        "image": trainer["image"],
                        "command": trainer["command"],
                        "resources": trainer.get("resourcesPerNode", {}),
                    }
                ],
            },
        }
        wait_until(
            lambda: (
                not self.core.list_namespaced_pod(NAMESPACE, field_selector=f"metadata.name={pod_name}").items
            ),
            timeout_s=10,
            what=f"old pod {pod_name} gone",
        )
        self.core.create_namespaced_pod(NAMESPACE, pod)
        self.kubelet.logs[(NAMESPACE, pod_name, "node")] = self.master_log
