"""Overload: more concurrent requests than the queue holds get 503 + Retry-After; abandoned requests stop generating.

A dedicated server with 2 rows and room for 2 more in its queue. Requests ask for long answers
(``min_tokens`` = ``max_tokens``) so they are still running when the next ones arrive. That
generation stopped early is read from the server's own counters (``/metrics``), not from timings.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.serve.support import TEST_SERVER_ARGS, metric, scrape

CHAT = "/openai/v1/chat/completions"
LONG = 200
#: An answer long enough that no machine decodes it within the client's read timeout below: even at
#: 0.1 ms per decoding step (eager PyTorch needs several times that per step) it takes 0.15 s.
VERY_LONG, READ_TIMEOUT_S = 1500, 0.05
BATCH, QUEUE = 2, 2
DEADLINE_S = 120


@pytest.fixture(scope="module")
def small_server(tiny_model_dir, tmp_path_factory):
    from medgo.serve.local import serve_locally

    with serve_locally(
        tiny_model_dir,
        max_new_tokens=VERY_LONG,
        model_name="medgo",
        log_path=tmp_path_factory.mktemp("overload") / "server.log",
        extra_args=[
            *TEST_SERVER_ARGS,
            "--max_batch_size",
            str(BATCH),
            "--max_queue",
            str(QUEUE),
            "--max_prompt_tokens",
            "256",
        ],
    ) as url:
        yield url


def _long_chat(question: str = "头痛", **extra) -> dict:
    return {
        "model": "medgo",
        "messages": [{"role": "user", "content": question}],
        "max_tokens": LONG,
        "min_tokens": LONG,
        **extra,
    }


def _wait_for(condition, what: str) -> None:
    """Poll the server's state until ``condition()`` holds (a condition with a deadline, not a sleep)."""
    deadline = time.monotonic() + DEADLINE_S
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def _idle(url: str) -> bool:
    samples = scrape(url)
    return metric(samples, "medgo_running_generations") == 0 and metric(samples, "medgo_queue_depth") == 0


def test_more_requests_than_the_queue_holds_get_503_with_retry_after(small_server):
    _wait_for(lambda: _idle(small_server), "an idle server")
    total = 3 * (BATCH + QUEUE)
    with httpx.Client(base_url=small_server, timeout=DEADLINE_S) as client:
        with ThreadPoolExecutor(max_workers=total) as pool:
            responses = list(pool.map(lambda i: client.post(CHAT, json=_long_chat(f"头痛{i}")), range(total)))
        statuses = [r.status_code for r in responses]
        assert set(statuses) <= {200, 503}
        assert BATCH <= statuses.count(200) <= total - (BATCH + QUEUE), "the batch and the queue were served"
        assert statuses.count(503) >= BATCH + QUEUE, "the rest was refused"
        for refused in (r for r in responses if r.status_code == 503):
            assert int(refused.headers["retry-after"]) >= 1
            assert refused.json()["error"]["type"] == "server_overloaded"
        for served in (r for r in responses if r.status_code == 200):
            assert served.json()["usage"]["completion_tokens"] == LONG
        assert client.get("/v2/health/ready").json() == {"ready": True}
        after = client.post(CHAT, json={**_long_chat(), "max_tokens": 4, "min_tokens": 0})
        assert after.status_code == 200


def test_abandoned_streams_stop_generating(small_server):
    _wait_for(lambda: _idle(small_server), "an idle server")
    before = scrape(small_server)
    abandoned = BATCH
    with httpx.Client(base_url=small_server, timeout=DEADLINE_S) as client:
        for i in range(abandoned):
            with client.stream("POST", CHAT, json=_long_chat(f"发热{i}", stream=True)) as response:
                assert response.status_code == 200
                lines = response.iter_lines()
                assert next(line for line in lines if line.startswith("data: "))  # generation began
            # leaving the block closes the connection mid-stream
    _wait_for(lambda: _idle(small_server), "the abandoned streams to end")
    after = scrape(small_server)
    cancelled = metric(after, "medgo_generations_total", reason="cancelled") - metric(
        before, "medgo_generations_total", reason="cancelled"
    )
    generated = metric(after, "medgo_completion_tokens_total") - metric(
        before, "medgo_completion_tokens_total"
    )
    assert cancelled == abandoned
    assert generated < abandoned * LONG, "generation stopped before max_tokens"


def test_a_client_that_times_out_stops_its_generation(small_server):
    _wait_for(lambda: _idle(small_server), "an idle server")
    before = scrape(small_server)
    with httpx.Client(
        base_url=small_server, timeout=httpx.Timeout(DEADLINE_S, read=READ_TIMEOUT_S)
    ) as client:
        with pytest.raises(httpx.ReadTimeout):
            client.post(CHAT, json=_long_chat("胸痛", max_tokens=VERY_LONG, min_tokens=VERY_LONG))
    _wait_for(lambda: _idle(small_server), "the abandoned request to end")
    after = scrape(small_server)
    assert (
        metric(after, "medgo_generations_total", reason="cancelled")
        - metric(before, "medgo_generations_total", reason="cancelled")
        == 1
    )
    assert (
        metric(after, "medgo_completion_tokens_total") - metric(before, "medgo_completion_tokens_total")
        < VERY_LONG
    )
    with httpx.Client(base_url=small_server, timeout=DEADLINE_S) as client:
        assert client.post(CHAT, json={**_long_chat(), "max_tokens": 2, "min_tokens": 0}).status_code == 200
