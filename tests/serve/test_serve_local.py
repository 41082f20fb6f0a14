"""``serve_locally`` and ``ask``: the local server lifecycle the pipeline and the demo rely on."""

from __future__ import annotations

import signal
import subprocess
import sys

import httpx
import pytest

from medgo.errors import MedgoError
from medgo.processes import free_port, stop_process_tree
from medgo.serve.local import ask, serve_locally


def test_ask_returns_the_answer_text(server_url):
    answer = ask(server_url, "高血压患者日常需要注意什么？", max_tokens=6, temperature=0)
    assert isinstance(answer, str)
    assert answer == ask(server_url, "高血压患者日常需要注意什么？", max_tokens=6, temperature=0)


def test_ask_with_a_system_prompt_is_accepted(server_url):
    assert isinstance(ask(server_url, "头痛", system="请用一句话回答。", max_tokens=4), str)


def test_ask_reports_a_refused_question_with_the_server_message(server_url):
    with pytest.raises(MedgoError, match="HTTP 400: max_tokens"):
        ask(server_url, "头痛", max_tokens=0)
    with pytest.raises(
        MedgoError, match=r"HTTP 404: the model is not served here \(served: medgo, medgo-lora\)"
    ):
        ask(server_url, "头痛", model="other")


def test_ask_reports_an_unreachable_server():
    with pytest.raises(MedgoError, match="cannot reach the model server"):
        ask(f"http://127.0.0.1:{free_port()}", "头痛")


def test_serve_locally_serves_on_the_given_port_and_stops_on_exit(tiny_model_dir, tmp_path):
    port = free_port()
    log_path = tmp_path / "server.log"
    with serve_locally(tiny_model_dir, port=port, model_name="medgo-test", log_path=log_path) as url:
        assert url == f"http://127.0.0.1:{port}"
        assert ask(url, "发热", model="medgo-test", max_tokens=2) is not None
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{url}/v2/health/live", timeout=2)
    assert "Shutting down" in log_path.read_text(encoding="utf-8", errors="replace")


def test_serve_locally_fails_fast_with_the_servers_reason(tmp_path):
    missing = tmp_path / "no-such-model"
    with pytest.raises(MedgoError) as info:
        with serve_locally(missing, log_path=tmp_path / "server.log", ready_timeout_s=60):
            pytest.fail("a server without a model must not become ready")
    message = str(info.value)
    assert "exited with code 2 before it was ready" in message
    assert f"model not found: {missing}" in message


def test_stop_process_kills_a_process_that_ignores_sigterm():
    ignores_sigterm = (
        "import signal, sys; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
        "print('ready', flush=True); sys.stdin.read()"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", ignores_sigterm], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout.readline().strip() == "ready"
        stop_process_tree(process, timeout_s=0.5)
        assert process.returncode == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        process.stdin.close()
        process.stdout.close()
