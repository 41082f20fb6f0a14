"""Durability: the server is SIGKILLed while feedback is being posted; after a restart on the same store
every acknowledged entry is there exactly once, and a client retrying the unacknowledged ones with their
feedback ids stores each of them once too.

Real processes throughout: ``python -m medgo.serve`` with the tiny model and a SQLite store file,
several client threads posting over HTTP, ``SIGKILL`` (no shutdown handler runs) once enough entries
were acknowledged, a second server process on the same file.
"""

from __future__ import annotations

import itertools
import sqlite3
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from medgo.feedback.tokens import TokenSet
from medgo.processes import free_port, stop_process_tree
from medgo.serve.local import server_command, wait_until_ready
from medgo.serve.paths import chat_completions_path, feedback_path, model_ready_path

TOKEN = "durability-write-token"
ACKS_BEFORE_KILL = 40
POSTERS = 4


def start_server(model_dir, db, tokens, log_path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    extra = ["--feedback_db_path", str(db), "--feedback_tokens_dir", str(tokens)]
    command = server_command(
        str(model_dir), port=port, model_name="medgo", max_new_tokens=4, extra_args=extra
    )
    log = open(log_path, "ab")  # noqa: SIM115 - the child holds it; closed with the test
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    wait_until_ready(
        process, url + model_ready_path("medgo"), deadline=time.monotonic() + 180, log_path=log_path
    )
    return process, url


def entry(feedback_id: str, response_id: str) -> dict:
    return {
        "feedback_id": feedback_id,
        "response_id": response_id,
        "rating": "unacceptable",
        "corrected_answer": f"更正 {feedback_id}",
        "department": "急诊科",
        "doctor_id": "d-durable",
    }


def test_acknowledged_feedback_survives_sigkill_exactly_once(tiny_model_dir, tmp_path):
    tokens = tmp_path / "tokens"
    TokenSet.from_tokens(tokens, {"write": [TOKEN]})
    db, log_path = tmp_path / "feedback.sqlite", tmp_path / "server.log"
    headers = {"authorization": f"Bearer {TOKEN}"}
    process, url = start_server(tiny_model_dir, db, tokens, log_path)
    try:
        chat = {"model": "medgo", "messages": [{"role": "user", "content": "发热怎么办？"}], "max_tokens": 4}
        response_ids = [
            httpx.post(url + chat_completions_path(), json=chat, timeout=60).json()["id"] for _ in range(3)
        ]

        acked: list[str] = []
        sent: list[str] = []
        rated: dict[str, str] = {}  # feedback id -> the response it rates
        lock = threading.Lock()
        enough = threading.Event()
        counter = itertools.count()

        def post_until_the_server_dies() -> None:
            with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
                while True:
                    feedback_id = f"fb-{next(counter):05d}"
                    with lock:
                        sent.append(feedback_id)
                        rated[feedback_id] = response_ids[len(sent) % 3]
                    try:
                        answer = client.post(feedback_path(), json=entry(feedback_id, rated[feedback_id]))
                    except httpx.TransportError:
                        return  # killed: this one is unacknowledged
                    assert answer.status_code == 201, answer.text
                    with lock:
                        acked.append(feedback_id)
                        if len(acked) >= ACKS_BEFORE_KILL:
                            enough.set()

        with ThreadPoolExecutor(POSTERS) as pool:
            posters = [pool.submit(post_until_the_server_dies) for _ in range(POSTERS)]
            assert enough.wait(timeout=120), "the server did not acknowledge feedback"
            process.kill()  # SIGKILL while the posters keep sending
            process.wait(timeout=30)
            for poster in posters:
                poster.result(timeout=60)
        acknowledged = set(acked)
        unacknowledged = [f for f in sent if f not in acknowledged]
        assert len(acknowledged) >= ACKS_BEFORE_KILL and unacknowledged  # some were in flight at the kill

        process, url = start_server(tiny_model_dir, db, tokens, log_path)
        stored = sqlite3.connect(db).execute(
            "SELECT feedback_id, COUNT(*) FROM feedback GROUP BY feedback_id"
        )
        counts = dict(stored.fetchall())
        assert acknowledged <= set(counts), f"lost acknowledged entries: {sorted(acknowledged - set(counts))}"
        assert set(counts.values()) == {1}
        assert set(counts) <= set(sent)  # nothing appeared that was not sent
        # The client retries what it never saw acknowledged: each is stored once (201) or was already (200).
        with httpx.Client(base_url=url, headers=headers, timeout=30) as client:
            for feedback_id in unacknowledged:
                retry = client.post(feedback_path(), json=entry(feedback_id, rated[feedback_id]))
                assert retry.status_code == (200 if feedback_id in counts else 201), retry.text
        after = dict(
            sqlite3.connect(db)
            .execute("SELECT feedback_id, COUNT(*) FROM feedback GROUP BY feedback_id")
            .fetchall()
        )
        assert set(after) == set(sent) and set(after.values()) == {1}
    finally:
        stop_process_tree(process, timeout_s=10)
