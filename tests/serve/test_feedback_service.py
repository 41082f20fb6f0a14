"""Several replicas, one writer: two model servers record answers in, and forward feedback to, the
``medgo-feedback`` service, which alone owns the SQLite store; the pipeline exports through it.

Real processes: the service (``python -m medgo.serve.feedback_service``) and two ``python -m medgo.serve``
replicas with ``--feedback_service_url``, all on 127.0.0.1. Feedback on an answer one replica served is
sent to the other replica, as a load balancer would.
"""

from __future__ import annotations

import json
from contextlib import ExitStack

import httpx
import pytest

from medgo.config import FeedbackExportConfig
from medgo.errors import MedgoError
from medgo.feedback.client import export_remote
from medgo.feedback.tokens import TokenSet
from medgo.serve.local import feedback_service_locally, serve_locally
from medgo.serve.paths import chat_completions_path, feedback_path

TOKENS = {
    "write": ["w-doctor-app"],
    "read": ["r-audit"],
    "record": ["rec-replicas"],
    "export": ["exp-pipeline"],
}


def bearer(role: str) -> dict[str, str]:
    return {"authorization": f"Bearer {TOKENS[role][0]}"}


@pytest.fixture(scope="module")
def cluster(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("feedback-service")
    service_tokens = root / "service-tokens"
    TokenSet.from_tokens(service_tokens, TOKENS)
    replica_tokens = root / "replica-tokens"  # a replica mounts only the record key of the Secret
    TokenSet.from_tokens(replica_tokens, {"record": TOKENS["record"]})
    with ExitStack() as stack:
        service = stack.enter_context(
            feedback_service_locally(
                root / "feedback.sqlite", tokens_dir=service_tokens, log_path=root / "service.log"
            )
        )
        replica_args = ["--feedback_service_url", service, "--feedback_tokens_dir", str(replica_tokens)]
        replicas = [
            stack.enter_context(
                serve_locally(
                    tiny_model_dir,
                    max_new_tokens=4,
                    log_path=root / f"replica-{i}.log",
                    extra_args=replica_args,
                )
            )
            for i in range(2)
        ]
        yield {"service": service, "replicas": replicas, "root": root}


def chat(url: str) -> str:
    body = {"model": "medgo", "messages": [{"role": "user", "content": "咳嗽一周怎么办？"}], "max_tokens": 4}
    response = httpx.post(url + chat_completions_path(), json=body, timeout=60)
    assert response.status_code == 200
    return response.json()["id"]


def feedback(feedback_id: str, response_id: str, **kw) -> dict:
    return {
        "feedback_id": feedback_id,
        "response_id": response_id,
        "rating": "acceptable",
        "department": "呼吸科",
        "doctor_id": "d-resp-1",
        **kw,
    }


def test_feedback_sent_to_any_replica_reaches_the_one_store(cluster):
    first, second = cluster["replicas"]
    served_by_first = chat(first)
    stored = httpx.post(
        second + feedback_path(), json=feedback("fb-r1", served_by_first), headers=bearer("write")
    )
    assert stored.status_code == 201, stored.text
    again = httpx.post(
        first + feedback_path(), json=feedback("fb-r1", served_by_first), headers=bearer("write")
    )
    assert again.status_code == 200 and again.json() == stored.json()
    assert httpx.get(f"{first}{feedback_path()}/fb-r1", headers=bearer("read")).json()["id"] == "fb-r1"
    health = httpx.get(cluster["service"] + "/healthz").json()
    assert health["entries"] >= 1 and health["responses"] >= 1


def test_roles_are_enforced_by_the_service(cluster):
    replica, service = cluster["replicas"][0], cluster["service"]
    response_id = chat(replica)
    assert httpx.post(replica + feedback_path(), json=feedback("fb-x", response_id)).status_code == 401
    assert (
        httpx.post(
            replica + feedback_path(), json=feedback("fb-x", response_id), headers=bearer("record")
        ).status_code
        == 403
    )  # a replica's own token cannot write feedback
    record = {"model": "medgo", "messages": [{"role": "user", "content": "x"}], "answer": "y", "created": 1}
    put = httpx.put(f"{service}/internal/v1/responses/forged", json=record, headers=bearer("write"))
    assert put.status_code == 403  # an app's token cannot plant answers
    with pytest.raises(MedgoError, match="HTTP 403"):
        export_remote(service, FeedbackExportConfig(target_uri="/tmp/never"), token=TOKENS["write"][0])


def test_the_pipeline_exports_through_the_service(cluster):
    replica, service = cluster["replicas"][1], cluster["service"]
    response_id = chat(replica)
    body = feedback("fb-export", response_id, rating="unacceptable", corrected_answer="建议查血常规和胸片。")
    assert httpx.post(replica + feedback_path(), json=body, headers=bearer("write")).status_code == 201
    target = cluster["root"] / "exports"
    summary = export_remote(service, FeedbackExportConfig(target_uri=str(target)), token=TOKENS["export"][0])
    assert summary["entries"] >= 1
    labels = [json.loads(line) for f in target.glob("*.jsonl") for line in f.read_text().splitlines()]
    assert {"fb-export", "fb-export/corrected"} <= {label["id"] for label in labels}
    again = export_remote(service, FeedbackExportConfig(target_uri=str(target)), token=TOKENS["export"][0])
    assert again["entries"] == 0  # exactly once


def test_a_replica_answers_503_while_the_service_is_down_and_still_chats(tiny_model_dir, tmp_path):
    from medgo.processes import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    with serve_locally(
        tiny_model_dir,
        max_new_tokens=4,
        log_path=tmp_path / "r.log",
        extra_args=["--feedback_service_url", dead],
    ) as url:
        response_id = chat(url)  # the answer is served although it cannot be recorded
        down = httpx.post(
            url + feedback_path(), json=feedback("fb-down", response_id), headers=bearer("write")
        )
        assert down.status_code == 503 and down.headers["retry-after"]
    assert "response log failed" in (tmp_path / "r.log").read_text()
