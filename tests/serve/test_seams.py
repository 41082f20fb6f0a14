"""The seams other features build on: a plugged-in router and the response log keyed by request id."""

from __future__ import annotations

import sys
from pathlib import Path

import httpx
import openai
import pytest

from medgo.serve.response_log import InMemoryResponseLog, ResponseLog

PLUGGED_SERVER = Path(__file__).with_name("plugged_server.py")


@pytest.fixture(scope="module")
def plugged_server(tiny_model_dir, tmp_path_factory):
    from medgo.processes import DEFAULT_STOP_TIMEOUT_S, stop_process_tree
    from medgo.serve.local import _start_until_ready
    from medgo.serve.paths import model_ready_path

    log_path = tmp_path_factory.mktemp("plugged") / "server.log"
    with open(log_path, "ab") as log_file:
        process, url = _start_until_ready(
            log_file,
            log_path,
            port=0,
            ready_timeout_s=180,
            command_for_port=lambda port: [
                sys.executable,
                str(PLUGGED_SERVER),
                str(tiny_model_dir),
                str(port),
            ],
            ready_path=model_ready_path("medgo"),
        )
        try:
            yield url
        finally:
            stop_process_tree(process, timeout_s=DEFAULT_STOP_TIMEOUT_S)


def test_every_answer_is_retrievable_by_its_request_id_through_a_plugged_router(plugged_server):
    from medgo.config import DEFAULT_SYSTEM_PROMPT

    client = openai.OpenAI(base_url=f"{plugged_server}/openai/v1", api_key="unused", max_retries=0)
    question = [{"role": "user", "content": "头痛三天"}]
    chat = client.chat.completions.create(
        model="medgo-lora", messages=question, max_tokens=6, extra_headers={"x-request-id": "fb-1"}
    )
    streamed = "".join(
        c.choices[0].delta.content or ""
        for c in client.chat.completions.create(
            model="medgo",
            messages=question,
            max_tokens=6,
            stream=True,
            extra_headers={"x-request-id": "fb-3"},
        )
        if c.choices
    )
    kept = httpx.get(f"{plugged_server}/test/responses/fb-1")
    assert kept.status_code == 200 and kept.headers["x-request-id"] != "fb-1", (
        "the plugged route gets its own id"
    )
    entry = kept.json()
    assert entry["answer"] == chat.choices[0].message.content
    assert entry["model"] == "medgo-lora"
    assert entry["messages"] == [{"role": "system", "content": DEFAULT_SYSTEM_PROMPT}, *question]
    assert httpx.get(f"{plugged_server}/test/responses/fb-3").json()["answer"] == streamed
    v1 = httpx.post(
        f"{plugged_server}/v1/models/medgo:predict",
        json={"instances": ["发热", "咳嗽"], "parameters": {"max_tokens": 3}},
        headers={"x-request-id": "fb-2"},
    )
    kept_v1 = [httpx.get(f"{plugged_server}/test/responses/fb-2~{i}").json()["answer"] for i in range(2)]
    assert kept_v1 == v1.json()["predictions"]
    assert httpx.get(f"{plugged_server}/test/responses/unknown").status_code == 404


def test_in_memory_log_keeps_the_newest_entries_within_retention():
    now = {"t": 1000.0}
    log = InMemoryResponseLog(retention_s=60, max_entries=2, clock=lambda: now["t"])
    assert isinstance(log, ResponseLog)
    turns = [{"role": "user", "content": "头痛"}]
    log.record("a", "medgo", turns, "答一", 1)
    log.record("b", "medgo", turns, "答二", 2)
    log.record("c", "medgo", turns, "答三", 3)
    assert log.get("a") is None and log.get("c").answer == "答三" and len(log) == 2
    now["t"] += 61
    assert log.get("b") is None and len(log) == 0
    log.record("d", "medgo", turns, "答四", 4)
    turns[0]["content"] = "changed"
    assert log.get("d").messages == [{"role": "user", "content": "头痛"}], "entries are copies"
