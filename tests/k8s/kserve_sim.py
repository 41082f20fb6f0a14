"""KServe's controller, simulated: the status KServe writes for an InferenceService, in both deployment modes.

No KServe runs in this sandbox. :class:`KServeSim` computes, from an InferenceService's spec and the
revisions it has seen, the status KServe would write, and is driven by whatever stores the object:
the in-memory API stand-in calls :meth:`KServeSim.reconcile` on every write (``server.controllers``);
on a real API server the same method's result is written through the status subresource on each
watch event. What it plays:

* **Serverless** (Knative): a new predictor spec (other than ``canaryTrafficPercent``) is a new revision
  ``<name>-predictor-0000N``; without a canary share a ready revision is rolled out to all traffic,
  with one it gets that share (tag ``latest``, URL ``canary_url``) and the last rolled-out revision
  keeps the rest (tag ``prev``). A revision that is not ready gets no traffic.
* **Standard** (raw Deployments, KServe >= 0.20): each ``spec.canary`` entry gets a ``canaryStatuses``
  entry (name, ready, trafficPercent) and a ``CanaryReady`` condition; no revisions.

``ready(predictor)`` decides whether a predictor comes up (default: always); ``stuck`` freezes traffic
after the first rollout (a controller that never promotes).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

from medgo.k8s.inference_service import deployment_mode


class KServeSim:
    def __init__(
        self,
        *,
        service_url: str,
        canary_url: str | None = None,
        ready: Callable[[dict], bool] = lambda predictor: True,
        stuck: bool = False,
    ) -> None:
        self.service_url = service_url
        self.canary_url = canary_url or service_url
        self.ready = ready
        self.stuck = stuck
        self._state: dict[str, dict[str, Any]] = {}

    def reconcile(self, isvc: dict) -> None:
        """Write the status KServe would, for the object's current generation, into ``isvc``."""
        isvc["status"] = self.status(isvc)

    def status(self, isvc: dict) -> dict[str, Any]:
        meta = isvc["metadata"]
        base = {
            "observedGeneration": meta.get("generation", 1),
            "url": f"http://{meta['name']}.{meta['namespace']}.example.com",
            "address": {"url": self.service_url},
        }
        if deployment_mode(isvc) == "Standard":
            return {**base, **self._standard(isvc)}
        return {**base, **self._serverless(isvc)}

    def _standard(self, isvc: dict) -> dict[str, Any]:
        spec = isvc["spec"]
        stable_ready = self.ready(spec["predictor"])
        canaries = [
            {
                "name": c["predictor"]["name"],
                "ready": self.ready(c["predictor"]),
                "trafficPercent": c["trafficPercent"],
            }
            for c in spec.get("canary") or []
        ]
        conditions = [{"type": "Ready", "status": str(stable_ready)}]
        if canaries:
            conditions.append({"type": "CanaryReady", "status": str(all(c["ready"] for c in canaries))})
        status: dict[str, Any] = {
            "deploymentMode": "Standard",
            "conditions": conditions,
            "components": {"predictor": {"url": self.service_url}},
        }
        if canaries:
            status["canaryStatuses"] = canaries
        return status

    def _serverless(self, isvc: dict) -> dict[str, Any]:
        meta = isvc["metadata"]
        predictor = copy.deepcopy(isvc["spec"]["predictor"])
        canary = predictor.pop("canaryTrafficPercent", None)
        state = self._state.setdefault(
            meta.get("uid", meta["name"]), {"revision": 0, "spec": None, "rolled_out": None, "ready": {}}
        )
        if predictor != state["spec"]:
            state["revision"] += 1
            state["spec"] = predictor
        latest = f"{meta['name']}-predictor-{state['revision']:05d}"
        latest_ready = state["ready"].setdefault(latest, self.ready(predictor))
        previous = state["rolled_out"]
        frozen = self.stuck and previous is not None
        if previous == latest:
            share = 100
        elif latest_ready and not frozen and (canary is None or previous is None):
            state["rolled_out"], share = latest, 100
        elif latest_ready:
            share = canary or 0
        else:
            share = 0
        traffic = [
            {
                "tag": "latest",
                "revisionName": latest,
                "percent": share,
                "latestRevision": True,
                "url": self.canary_url,
            }
        ]
        if share < 100 and state["rolled_out"]:
            traffic.append(
                {
                    "tag": "prev",
                    "revisionName": state["rolled_out"],
                    "percent": 100 - share,
                    "latestRevision": False,
                    "url": f"http://prev-{meta['name']}-predictor.{meta['namespace']}.example.com",
                }
            )
        components = {"latestCreatedRevision": latest, "traffic": traffic}
        ready_revision = latest if latest_ready else state["rolled_out"]
        if ready_revision:
            components["latestReadyRevision"] = ready_revision
        if state["rolled_out"]:
            components["latestRolledoutRevision"] = state["rolled_out"]
        ready = {"type": "Ready", "status": "True" if latest_ready else "False"}
        if not latest_ready:
            ready.update(reason="RevisionMissing", message=f"Revision {latest} failed: container exited")
        return {
            "deploymentMode": "Serverless",
            "conditions": [ready],
            "components": {"predictor": components},
        }
