"""The feedback route on the real ``python -m medgo.serve`` (tiny model, store in the server's process).

Chats go through the official ``openai`` client, so the response id a doctor's app gets is the one it
sends back; feedback goes over raw HTTP with the bearer tokens of a Secret-like token directory.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

import httpx
import openai
import pytest

from medgo.feedback.tokens import TokenSet
from medgo.serve.local import serve_locally

FEEDBACK = "/openai/v1/feedback"
WRITE, READ = "write-token-1", "read-token-1"


@pytest.fixture(scope="module")
def feedback_server(tiny_model_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("feedback-server")
    TokenSet.from_tokens(root / "tokens", {"write": [WRITE], "read": [READ]})
    db = root / "feedback.sqlite"
    args = ["--feedback_db_path", str(db), "--feedback_tokens_dir", str(root / "tokens")]
    with serve_locally(
        tiny_model_dir, max_new_tokens=8, log_path=root / "server.log", extra_args=args
    ) as url:
        yield url, db, root / "server.log"


@pytest.fixture(scope="module")
def http(feedback_server):
    with httpx.Client(base_url=feedback_server[0], timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def answered(feedback_server) -> str:
    """The id of one chat completion, as the official client returns it."""
    client = openai.OpenAI(base_url=f"{feedback_server[0]}/openai/v1", api_key="unused", max_retries=0)
    completion = client.chat.completions.create(
        model="medgo", messages=[{"role": "user", "content": "高血压患者需要注意什么？"}], max_tokens=8
    )
    return completion.id


def body(answered: str, **kw) -> dict:
    return {
        "feedback_id": "fb-api-1",
        "response_id": answered,
        "rating": "unacceptable",
        "corrected_answer": "应低盐饮食、规律服药并监测血压。",
        "department": "心内科",
        "doctor_id": "d-7f3a",
        **kw,
    }


def auth(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def test_feedback_is_stored_with_the_prompt_and_answer_and_is_idempotent(http, answered, feedback_server):
    created = http.post(FEEDBACK, json=body(answered), headers=auth(WRITE))
    assert created.status_code == 201, created.text
    entry = created.json()
    assert entry["id"] == "fb-api-1" and entry["response_id"] == answered and entry["has_correction"]
    assert "corrected_answer" not in entry and "answer" not in entry  # no patient text in API answers
    replay = http.post(FEEDBACK, json=body(answered), headers=auth(WRITE))
    assert replay.status_code == 200 and replay.json() == entry
    reused = http.post(
        FEEDBACK, json=body(answered, rating="acceptable", corrected_answer=None), headers=auth(WRITE)
    )
    assert reused.status_code == 409 and reused.json()["error"]["code"] == "feedback_id_reused"
    assert http.get(f"{FEEDBACK}/fb-api-1", headers=auth(READ)).json() == entry
    db = sqlite3.connect(feedback_server[1])
    rows = db.execute(
        "SELECT messages, answer, corrected_answer FROM feedback WHERE feedback_id = 'fb-api-1'"
    )
    [(messages, answer, corrected)] = rows.fetchall()
    assert "高血压患者需要注意什么？" in messages and '"role": "system"' in messages  # as the model saw it
    assert isinstance(answer, str) and corrected.startswith("应低盐饮食")
    db.close()


@pytest.mark.parametrize(
    "headers",
    [{}, auth("not-a-token"), {"authorization": f"Basic {WRITE}"}, {"authorization": "Bearer"}],
    ids=["none", "unknown", "wrong-scheme", "empty"],
)
def test_without_a_valid_token_it_is_401(http, answered, headers):
    response = http.post(FEEDBACK, json=body(answered, feedback_id="fb-401"), headers=headers)
    assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")
    assert http.get(f"{FEEDBACK}/fb-401", headers=headers).status_code == 401


def test_a_read_only_token_may_read_but_not_write_it_is_403(http, answered):
    response = http.post(FEEDBACK, json=body(answered, feedback_id="fb-403"), headers=auth(READ))
    assert response.status_code == 403 and response.json()["error"]["type"] == "permission_error"
    assert http.get(f"{FEEDBACK}/fb-403", headers=auth(READ)).status_code == 404  # nothing was written


@pytest.mark.parametrize(
    ("change", "status", "needle"),
    [
        ({"response_id": "chatcmpl-never-served"}, 404, "response_id is unknown"),
        ({"rating": "meh"}, 400, "rating"),
        ({"rating": "acceptable"}, 400, "only for rating 'unacceptable'"),
        ({"doctor_id": "13812345678"}, 400, "doctor_id looks like a personal identifier"),
        ({"department": ""}, 400, "department"),
        ({"mood": "tired"}, 400, "mood: unknown parameter"),
        ({"corrected_answer": "很长" * 5000}, 400, "longer than 8000"),
    ],
    ids=[
        "unknown-response",
        "bad-rating",
        "correction-on-acceptable",
        "real-phone",
        "blank-dept",
        "extra",
        "long",
    ],
)
def test_bad_feedback_is_a_clear_4xx_not_stored(http, answered, change, status, needle):
    response = http.post(FEEDBACK, json=body(answered, feedback_id="fb-bad", **change), headers=auth(WRITE))
    assert response.status_code == status and needle in response.json()["error"]["message"]
    assert "13812345678" not in response.text  # error bodies never echo client text
    assert http.get(f"{FEEDBACK}/fb-bad", headers=auth(READ)).status_code == 404


def test_malformed_and_oversized_bodies(http):
    assert http.post(FEEDBACK, content=b"{not json", headers=auth(WRITE)).status_code == 400
    assert http.post(FEEDBACK, content=b"[1, 2]", headers=auth(WRITE)).status_code == 400
    assert http.post(FEEDBACK, content=b"{" + b" " * 70_000 + b"}", headers=auth(WRITE)).status_code == 413


def test_the_log_holds_no_patient_text(http, answered, feedback_server):
    http.post(
        FEEDBACK,
        json=body(answered, feedback_id="fb-log", corrected_answer="患者王芳需复诊"),
        headers=auth(WRITE),
    )
    log = Path(feedback_server[2]).read_text(encoding="utf-8")
    assert "fb-log" in log and "王芳" not in log and "高血压患者需要注意什么" not in log
