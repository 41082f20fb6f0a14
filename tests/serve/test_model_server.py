"""The real ``python -m medgo.serve`` on 127.0.0.1: OpenAI, KServe v1 and v2 routes, errors, privacy."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

CHAT = "/openai/v1/chat/completions"
V1_PREDICT = "/v1/models/medgo:predict"
V2_INFER = "/v2/models/medgo/infer"
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def http(server_url):
    with httpx.Client(base_url=server_url, timeout=60) as client:
        yield client


@pytest.fixture(scope="module")
def openai_client(server_url):
    return openai.OpenAI(base_url=f"{server_url}/openai/v1", api_key="unused", max_retries=0)


def test_openai_client_gets_a_chat_completion_with_usage(openai_client):
    response = openai_client.chat.completions.create(
        model="medgo", messages=[{"role": "user", "content": "高血压患者日常需要注意什么？"}], max_tokens=8
    )
    assert response.object == "chat.completion"
    assert response.id.startswith("chatcmpl-")
    assert response.model == "medgo"
    [choice] = response.choices
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str)
    assert choice.finish_reason in {"stop", "length"}
    assert response.usage.prompt_tokens > 0
    assert 1 <= response.usage.completion_tokens <= 8
    assert response.usage.total_tokens == response.usage.prompt_tokens + response.usage.completion_tokens


def test_openai_models_lists_the_served_model(openai_client):
    assert [m.id for m in openai_client.models.list().data] == ["medgo"]


@pytest.mark.parametrize(
    ("settings", "field"),
    [
        ({"max_tokens": -1}, "max_tokens"),
        ({"max_tokens": 8, "temperature": 2.5}, "temperature"),
        ({"max_tokens": 8, "top_p": 0}, "top_p"),
        ({"max_tokens": 65}, "max_tokens"),
    ],
)
def test_openai_client_sees_invalid_settings_as_bad_request(openai_client, settings, field):
    with pytest.raises(openai.BadRequestError) as info:
        openai_client.chat.completions.create(
            model="medgo", messages=[{"role": "user", "content": "头痛"}], **settings
        )
    assert info.value.status_code == 400
    assert field in info.value.message


def test_a_prompt_over_the_server_limit_is_a_bad_request(openai_client):
    with pytest.raises(openai.BadRequestError, match="this server accepts at most 2048"):
        openai_client.chat.completions.create(
            model="medgo", messages=[{"role": "user", "content": "反复发热咳嗽" * 1500}], max_tokens=4
        )


def test_unknown_model_is_not_found(openai_client):
    with pytest.raises(openai.NotFoundError, match="not served here"):
        openai_client.chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": "头痛"}])


def test_streaming_is_refused_with_a_reason(http):
    response = http.post(
        CHAT, json={"model": "medgo", "messages": [{"role": "user", "content": "头痛"}], "stream": True}
    )
    assert response.status_code == 400
    assert "stream" in response.json()["error"]["message"]


@pytest.mark.parametrize("path", [CHAT, V1_PREDICT, V2_INFER])
def test_malformed_json_is_a_client_error(http, path):
    response = http.post(path, content=b'{"instances": [', headers=JSON)
    assert 400 <= response.status_code < 500


def test_v1_predict_answers_each_instance(http):
    response = http.post(
        V1_PREDICT,
        json={
            "instances": [{"prompt": "发热三天"}, {"messages": [{"role": "user", "content": "咳嗽"}]}],
            "parameters": {"max_tokens": 4},
        },
    )
    assert response.status_code == 200
    predictions = response.json()["predictions"]
    assert len(predictions) == 2 and all(isinstance(p, str) for p in predictions)


def test_v1_predict_invalid_settings_are_400_with_a_message(http):
    response = http.post(V1_PREDICT, json={"instances": ["头痛"], "parameters": {"temperature": -1}})
    assert response.status_code == 400
    assert "parameters.temperature" in response.json()["error"]


def test_v2_infer_maps_bytes_prompts_to_bytes_answers(http):
    response = http.post(
        V2_INFER,
        json={
            "id": "req-7",
            "inputs": [{"name": "text_input", "shape": [2], "datatype": "BYTES", "data": ["发热", "咳嗽"]}],
            "parameters": {"max_tokens": 4},
        },
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["id"], body["model_name"]) == ("req-7", "medgo")
    [output] = body["outputs"]
    assert (output["name"], output["datatype"], output["shape"]) == ("text_output", "BYTES", [2])
    assert len(output["data"]) == 2 and all(isinstance(text, str) for text in output["data"])


def test_v2_infer_rejects_a_shape_that_does_not_match_the_data(http):
    response = http.post(
        V2_INFER,
        json={"inputs": [{"name": "text_input", "shape": [3], "datatype": "BYTES", "data": ["发热"]}]},
    )
    assert response.status_code == 400
    assert "does not match its shape" in response.json()["error"]


def test_concurrent_requests_get_the_answer_each_would_get_alone(http):
    def ask(question: str) -> str:
        response = http.post(
            CHAT,
            json={
                "model": "medgo",
                "max_tokens": 6,
                "temperature": 0,
                "messages": [{"role": "user", "content": question}],
            },
        )
        assert response.status_code == 200
        return response.json()["choices"][0]["message"]["content"]

    questions = ["头痛", "胸痛伴出汗", "血糖偏高"]
    alone = [ask(q) for q in questions]
    with ThreadPoolExecutor(max_workers=6) as pool:
        assert list(pool.map(ask, questions * 2)) == alone * 2


def test_server_stays_healthy_after_bad_requests(http):
    http.post(CHAT, content=b"not json", headers=JSON)
    http.post(V1_PREDICT, json={"instances": ["x"], "parameters": {"max_tokens": 0}})
    http.post(V2_INFER, json={"inputs": [{"name": "x", "shape": [1], "datatype": "INT32", "data": [1]}]})
    assert http.get("/v2/health/ready").json() == {"ready": True}
    assert http.get("/v1/models/medgo").json() == {"name": "medgo", "ready": True}
    ok = http.post(
        CHAT, json={"model": "medgo", "max_tokens": 2, "messages": [{"role": "user", "content": "头痛"}]}
    )
    assert ok.status_code == 200


def test_logs_record_requests_but_never_their_text(http, server_log: Path):
    marker = "患者王五身份证110101199003074514主诉"
    before = server_log.read_text(encoding="utf-8", errors="replace").count("generated")
    response = http.post(
        CHAT, json={"model": "medgo", "max_tokens": 4, "messages": [{"role": "user", "content": marker}]}
    )
    assert response.status_code == 200
    bad = http.post(CHAT, json={"model": "medgo", "messages": [{"role": marker, "content": marker}]})
    assert bad.status_code == 400 and marker not in bad.text
    log_text = server_log.read_text(encoding="utf-8", errors="replace")
    assert log_text.count("generated") > before, "the request was logged"
    assert marker not in log_text
    answer = response.json()["choices"][0]["message"]["content"].strip()
    if len(answer) >= 8:
        assert answer not in log_text


def _listening_addresses(port: int) -> set[str]:
    """Local IPv4 addresses listening on ``port``, from /proc/net/tcp (state 0A = LISTEN)."""
    addresses = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        local, state = line.split()[1], line.split()[3]
        host_hex, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:
            addresses.add(".".join(str(b) for b in reversed(bytes.fromhex(host_hex))))
    return addresses


@pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc/net/tcp")
def test_local_server_listens_on_loopback_only(server_url):
    port = httpx.URL(server_url).port
    assert _listening_addresses(port) == {"127.0.0.1"}
