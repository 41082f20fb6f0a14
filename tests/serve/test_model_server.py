"""The real ``python -m medgo.serve`` on 127.0.0.1 over raw HTTP: KServe v1 and v2, bad requests, limits, ids, metrics, privacy."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

CHAT = "/openai/v1/chat/completions"
V1_PREDICT = "/v1/models/medgo:predict"
V2_INFER = "/v2/models/medgo/infer"
JSON = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def http(server_url):
    with httpx.Client(base_url=server_url, timeout=60) as client:
        yield client


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


@pytest.mark.parametrize(
    ("parameters", "named"),
    [
        ({"temperature": -1}, "parameters.temperature"),
        ({"seed": 2**64}, "parameters.seed"),
        ({"n": 2}, "parameters.n"),
    ],
)
def test_v1_predict_invalid_settings_are_400_naming_them(http, parameters, named):
    response = http.post(V1_PREDICT, json={"instances": ["头痛"], "parameters": parameters})
    assert response.status_code == 400
    assert named in response.json()["error"]


def test_v1_predict_echoes_the_request_id(http):
    response = http.post(
        V1_PREDICT,
        json={"instances": ["头痛"], "parameters": {"max_tokens": 2}},
        headers={"x-request-id": "v1-abc"},
    )
    assert response.status_code == 200 and response.headers["x-request-id"] == "v1-abc"


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


def test_v2_infer_without_an_id_answers_with_the_request_id(http):
    response = http.post(
        V2_INFER,
        json={
            "inputs": [{"name": "text_input", "shape": [1], "datatype": "BYTES", "data": ["发热"]}],
            "parameters": {"max_tokens": 2},
        },
    )
    assert response.status_code == 200
    assert response.json()["id"] == response.headers["x-request-id"]


def test_unknown_models_are_404_without_echoing_the_name(http):
    v2_body = {"inputs": [{"name": "text_input", "shape": [1], "datatype": "BYTES", "data": ["x"]}]}
    for path, body in (
        ("/v1/models/patient-zhang:predict", {"instances": ["x"]}),
        ("/v2/models/patient-zhang/infer", v2_body),
    ):
        response = http.post(path, json=body)
        assert response.status_code == 404 and "patient-zhang" not in response.text


def test_explain_is_a_client_error_not_a_server_error(http):
    response = http.post("/v1/models/medgo:explain", json={"instances": ["头痛"]})
    assert response.status_code == 400 and "no explainer" in response.json()["error"]


def test_an_invalid_request_id_is_refused(http):
    response = http.post(CHAT, json={"model": "medgo", "messages": []}, headers={"x-request-id": "a b/c"})
    assert response.status_code == 400 and "x-request-id" in response.json()["error"]["message"]
    assert response.headers["x-request-id"] != "a b/c"


def test_an_oversized_body_is_refused_before_it_is_read(http):
    declared = http.post(CHAT, content=b"{" + b" " * (20 * 1024 * 1024) + b"}", headers=JSON)
    assert declared.status_code == 413 and "larger than 1048576 bytes" in declared.json()["error"]["message"]

    def chunked():
        for _ in range(40):
            yield b" " * 65536

    streamed = http.post(V1_PREDICT, content=chunked(), headers=JSON)
    assert streamed.status_code == 413
    assert http.get("/v2/health/ready").status_code == 200


def test_metrics_count_requests_tokens_batches_and_first_tokens(http, server_url):
    from tests.serve.support import metric, scrape

    before = scrape(server_url)
    ok = http.post(
        CHAT, json={"model": "medgo", "max_tokens": 3, "messages": [{"role": "user", "content": "头痛"}]}
    )
    bad = http.post(V1_PREDICT, json={"instances": [], "parameters": {}})
    assert (ok.status_code, bad.status_code) == (200, 400)
    after = scrape(server_url)

    def grew(name, **labels):
        return metric(after, name, **labels) - metric(before, name, **labels)

    assert grew("medgo_http_requests_total", route=CHAT, status="200") == 1
    assert grew("medgo_http_requests_total", route="/v1/models/{model_name}:predict", status="400") == 1
    assert grew("medgo_http_request_duration_seconds_count", route=CHAT) == 1
    assert grew("medgo_prompt_tokens_total", model="medgo") == ok.json()["usage"]["prompt_tokens"]
    assert grew("medgo_completion_tokens_total", model="medgo") == ok.json()["usage"]["completion_tokens"]
    assert grew("medgo_time_to_first_token_seconds_count", model="medgo") == 1
    assert grew("medgo_batch_size_count", model="medgo") >= 1
    assert ("medgo_queue_depth", (("model", "medgo"),)) in after


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
        CHAT,
        json={"model": "medgo", "max_tokens": 4, "messages": [{"role": "user", "content": marker}]},
        headers={"x-request-id": "log-check-1"},
    )
    assert response.status_code == 200
    bad = http.post(CHAT, json={"model": "medgo", "messages": [{"role": marker, "content": marker}]})
    assert bad.status_code == 400 and marker not in bad.text
    log_text = server_log.read_text(encoding="utf-8", errors="replace")
    assert log_text.count("generated") > before, "the request was logged"
    assert "log-check-1" in log_text, "the log line carries the request id"
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
