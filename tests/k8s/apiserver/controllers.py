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
import contextlib
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

from medgo.k8s._common import Poller, merge_patch_to

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
            with contextlib.suppress(OSError):  # the watch thread closed it first: already broken
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


def _reply(handler: http.server.BaseHTTPRequestHandler, body: bytes, content_type: str) -> None:
    handler.send_response(200)
    handler.send_header("Content-Type", content_type)
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def _https_server(
    handler: type, cert, key, name: str
) -> tuple[http.server.ThreadingHTTPServer, threading.Thread]:
    """A threaded HTTPS server on a free loopback port, and the (unstarted) thread that serves it."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    return server, threading.Thread(target=server.serve_forever, daemon=True, name=name)


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
                _reply(self, text.encode(), "text/plain")

            def log_message(self, *args):
                pass

        self.server, self._thread = _https_server(Handler, cert, key, "fake-kubelet")
        self.port = self.server.server_address[1]

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


class _JobControllerSim:
    """What the two training controllers below share: a watch on their job kind, one plan per job.

    Each new job (an ``ADDED`` event; a job re-created under the same name is a new one) takes the next
    entry of ``outcomes`` (the last one repeats). The controller creates the job's first pod (bound to
    ``kubelet``'s node, its log set to ``master_log``), then writes one status step per event the watch
    delivers, so each step follows the previous one. Deleting a job deletes its pods.
    """

    RESOURCE: tuple[str, str, str]
    POD_LABEL: str  # the label whose value is the job's name on every pod of the job

    def __init__(
        self,
        cluster: KubeCluster,
        kubelet: FakeKubelet,
        signal: ChangeSignal,
        outcomes: list[dict[str, Any] | str | None],
        master_log: str = "",
    ):
        self.kubelet, self.signal = kubelet, signal
        self.outcomes, self.master_log = list(outcomes), master_log
        self.api = cluster.admin_client()
        self.custom, self.core = client.CustomObjectsApi(self.api), client.CoreV1Api(self.api)
        self.attempts: dict[str, list[str]] = {}  # job name -> uids seen, in order
        self._plans: dict[str, list[Any]] = {}  # uid -> status steps still to write
        self.watch = ObjectWatch(self.api, self.RESOURCE, self._on_event)

    def start(self):
        self.watch.start()
        return self

    def stop(self) -> None:
        try:
            self.watch.stop()
        finally:
            self.api.close()

    # what each controller says differently
    def _plan(self, outcome: dict[str, Any] | str | None) -> list[Any]:
        raise NotImplementedError

    def _status(self, conditions: list[dict[str, Any]]) -> dict[str, Any]:
        raise NotImplementedError

    def _outcome_conditions(self, outcome: dict[str, Any]) -> list[dict[str, Any]]:
        raise NotImplementedError

    def _pod(self, job: dict) -> tuple[dict[str, Any], str]:
        """The job's first pod and the name of the container whose log the launcher reads."""
        raise NotImplementedError

    def _on_event(self, event_type: str, job: dict) -> None:
        meta = job["metadata"]
        name, uid = meta["name"], meta["uid"]
        group, version, plural = self.RESOURCE
        if event_type == "DELETED":
            self._plans.pop(uid, None)
            self.core.delete_collection_namespaced_pod(
                NAMESPACE, label_selector=f"{self.POD_LABEL}={name}", grace_period_seconds=0
            )
            self.signal.notify()
            return
        if uid not in self._plans:
            if event_type != "ADDED":
                return
            uids = self.attempts.setdefault(name, [])
            uids.append(uid)
            outcome = self.outcomes[min(len(uids), len(self.outcomes)) - 1] if self.outcomes else None
            self._create_pod(job)
            self._plans[uid] = self._plan(outcome)
        plan = self._plans[uid]
        if not plan:
            return
        step = plan.pop(0)
        if step is None:
            return
        if step == "delete":
            self.custom.delete_namespaced_custom_object(group, version, NAMESPACE, plural, name)
            return
        conditions = self._outcome_conditions(step) if isinstance(step, dict) else step
        self.custom.patch_namespaced_custom_object_status(
            group, version, NAMESPACE, plural, name, {"status": self._status(conditions)}
        )
        self.signal.notify()

    def _create_pod(self, job: dict) -> None:
        pod, container = self._pod(job)
        pod_name = pod["metadata"]["name"]
        wait_until(
            lambda: (
                not self.core.list_namespaced_pod(NAMESPACE, field_selector=f"metadata.name={pod_name}").items
            ),
            timeout_s=10,
            what=f"old pod {pod_name} gone",
        )
        self.core.create_namespaced_pod(NAMESPACE, pod)
        self.kubelet.logs[(NAMESPACE, pod_name, container)] = self.master_log


def _final_condition(outcome: dict[str, Any]) -> dict[str, Any]:
    return _condition(outcome["type"], outcome.get("reason", ""), outcome.get("message", ""))


class TrainingOperatorSim(_JobControllerSim):
    """Plays Kubeflow's training operator for PyTorchJobs, event by event.

    An outcome is a condition dict such as ``{"type": "Succeeded"}`` or ``{"type": "Failed", "reason": ...,
    "message": ...}``, ``None`` (stays Running), or ``"delete"`` (the job is deleted once Running, as if
    someone removed it underneath the launcher). The operator creates the job's master pod from the Master
    template (its ``pytorch`` log set to ``master_log``), then writes ``Created``, ``Running`` and the
    outcome. Only the master pod is created: the launcher reads only its log.
    """

    RESOURCE = PYTORCHJOB
    POD_LABEL = JOB_NAME_LABEL

    def _plan(self, outcome):
        return [[_condition("Created")], [_condition("Created"), _condition("Running")], outcome]

    def _outcome_conditions(self, outcome):  # Running stays True only while running
        return [
            _condition("Created"),
            {**_condition("Running"), "status": "False"},
            _final_condition(outcome),
        ]

    def _status(self, conditions):
        status = {
            "conditions": conditions,
            "replicaStatuses": {"Master": {"active": 0 if len(conditions) > 2 else 1}},
        }
        if conditions[-1]["type"] in ("Succeeded", "Failed"):
            status["completionTime"] = now()
            status["replicaStatuses"]["Master"] = {"active": 0, conditions[-1]["type"].lower(): 1}
        return status

    def _pod(self, job):
        name = job["metadata"]["name"]
        template = copy.deepcopy(job["spec"]["pytorchReplicaSpecs"]["Master"]["template"])
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
                "name": f"{name}-master-0",
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
        return pod, "pytorch"


class KServeControllerSim:
    """Plays KServe's controller on the real API server: on each generation it has not observed, it writes
    ``sim.status(isvc)`` (a :class:`tests.k8s.kserve_sim.KServeSim`, both deployment modes) through the status
    subresource, as a merge patch (keys KServe would drop are removed). ``on_spec`` sees each new spec first.
    """

    def __init__(self, cluster: KubeCluster, signal: ChangeSignal, sim, on_spec=None) -> None:
        self.signal, self.sim, self.on_spec = signal, sim, on_spec
        self.api = cluster.admin_client()
        self.custom = client.CustomObjectsApi(self.api)
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
        old = isvc.get("status") or {}
        if old.get("observedGeneration") == isvc["metadata"]["generation"]:
            return
        if self.on_spec:
            self.on_spec(isvc)
        patch = merge_patch_to(old, self.sim.status(isvc))
        meta = isvc["metadata"]
        self.custom.patch_namespaced_custom_object_status(
            *INFERENCESERVICE[:2], meta["namespace"], INFERENCESERVICE[2], meta["name"], {"status": patch}
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
                _reply(self, body, "application/json")

            def log_message(self, *args):
                pass

        self.server, self._thread = _https_server(Handler, cert, key, "webhook")

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


def trainjob_pod_patch(job: dict[str, Any]) -> dict[str, Any]:
    """The pod-spec fields a TrainJob sets on its runtime's ``node`` job, read the way each Trainer release
    reads them: ``runtimePatches`` (v2.2+), ``podTemplateOverrides`` (v2.1) or ``podSpecOverrides`` (v2.0).

    Later entries win per field, as in Trainer. A TrainJob carrying more than one of the three fields is an
    error here: no release reads two of them.
    """
    spec = job["spec"]
    present = [f for f in ("runtimePatches", "podTemplateOverrides", "podSpecOverrides") if spec.get(f)]
    if len(present) > 1:
        raise AssertionError(
            f"TrainJob {job['metadata']['name']} sets {present}; a Trainer reads one of them"
        )
    patch: dict[str, Any] = {}
    for entry in spec.get("runtimePatches") or []:
        runtime_spec = entry.get("trainingRuntimeSpec") or {}
        for replicated in runtime_spec.get("template", {}).get("spec", {}).get("replicatedJobs", []):
            if replicated["name"] == "node":
                patch.update(
                    replicated.get("template", {}).get("spec", {}).get("template", {}).get("spec", {})
                )
    for entry in spec.get("podTemplateOverrides") or []:
        if {"name": "node"} in entry.get("targetJobs", []):
            patch.update(entry.get("spec") or {})
    for entry in spec.get("podSpecOverrides") or []:
        if {"name": "node"} in entry.get("targetJobs", []):
            patch.update({k: v for k, v in entry.items() if k != "targetJobs"})
    return patch


class TrainerV2Sim(_JobControllerSim):
    """Plays Kubeflow Trainer v2 (with its JobSet controller) for TrainJobs, event by event.

    An outcome is a condition dict such as ``{"type": "Complete"}`` or ``{"type": "Failed", "reason": ...,
    "message": ...}``, or ``None`` (stays running). It creates the node-0 pod the way the
    ``torch-distributed`` runtime would (container ``node`` with the TrainJob's image, command, env and
    resources, the JobSet labels, completion index 0) with the pod settings of :func:`trainjob_pod_patch`
    applied (service account, volumes and mounts, node selector, tolerations), so the API server checks the
    pod they make; then writes ``Created`` and the outcome through the status subresource.
    """

    RESOURCE = TRAINJOB
    POD_LABEL = JOBSET_NAME_LABEL

    def _plan(self, outcome):
        return [[_condition("Created")], outcome]

    def _outcome_conditions(self, outcome):
        return [_condition("Created"), _final_condition(outcome)]

    def _status(self, conditions):
        return {"conditions": conditions}

    def _pod(self, job):
        name, trainer = job["metadata"]["name"], job["spec"]["trainer"]
        patch = trainjob_pod_patch(job)
        container = {
            "name": "node",
            "image": trainer["image"],
            "command": trainer["command"],
            "env": trainer.get("env", []),
            "resources": trainer.get("resourcesPerNode", {}),
        }
        for patched in patch.get("containers", []):
            if patched["name"] == "node":
                container["volumeMounts"] = patched.get("volumeMounts", [])
        pod_spec = {
            "nodeName": self.kubelet.name,
            "serviceAccountName": patch.get("serviceAccountName", "default"),
            "automountServiceAccountToken": False,
            "containers": [container],
        }
        pod_spec.update({k: patch[k] for k in ("volumes", "nodeSelector", "tolerations") if k in patch})
        pod = {
            "metadata": {
                "name": f"{name}-node-0-0",
                "namespace": NAMESPACE,
                "labels": {
                    JOBSET_NAME_LABEL: name,
                    "jobset.sigs.k8s.io/replicatedjob-name": "node",
                    "batch.kubernetes.io/job-completion-index": "0",
                },
            },
            "spec": pod_spec,
        }
        return pod, "node"
