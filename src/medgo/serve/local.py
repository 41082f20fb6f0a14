"""Run the model server as a local subprocess and ask it questions.

The pipeline's local deploy step and ``medgo demo`` use these to exercise the real server
(``python -m medgo.serve``, the same entry point as the serving image) on 127.0.0.1. The
server's output goes to a log file, not the caller's terminal; the log holds no prompt or
answer text.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

import httpx

from medgo.errors import MedgoError
from medgo.logs import fields
from medgo.processes import DEFAULT_STOP_TIMEOUT_S, LOOPBACK, free_port, log_tail, stop_process_tree
from medgo.serve.paths import chat_completions_path, model_ready_path

log = logging.getLogger(__name__)

DEFAULT_READY_TIMEOUT_S = 180.0
#: Pause between readiness probes; spent waiting on the process, so an early exit ends it at once.
_PROBE_INTERVAL_S = 0.2
#: A free port found by the caller can be taken before the server binds it; try a few.
_PORT_ATTEMPTS = 3
_LOG_TAIL_LINES = 20


class _PortTaken(Exception):
    """The server could not bind its port (another process took it first)."""


def server_command(
    model_uri: str,
    *,
    port: int,
    model_name: str,
    adapter_uri: str | None = None,
    max_new_tokens: int | None = None,
    extra_args: Sequence[str] = (),
) -> list[str]:
    """The ``python -m medgo.serve`` command line for a loopback-only server without gRPC."""
    command = [
        sys.executable,
        "-m",
        "medgo.serve",
        "--model_uri",
        str(model_uri),
        "--model_name",
        model_name,
        "--http_host",
        LOOPBACK,
        "--http_port",
        str(port),
        "--enable_grpc",
        "false",
    ]
    if adapter_uri:
        command += ["--adapter_uri", str(adapter_uri)]
    if max_new_tokens is not None:
        command += ["--max_new_tokens", str(max_new_tokens)]
    return command + list(extra_args)


@contextmanager
def serve_locally(
    model_uri: str | os.PathLike,
    *,
    adapter_uri: str | os.PathLike | None = None,
    port: int = 0,
    model_name: str = "medgo",
    max_new_tokens: int | None = None,
    log_path: str | os.PathLike | None = None,
    ready_timeout_s: float = DEFAULT_READY_TIMEOUT_S,
    stop_timeout_s: float = DEFAULT_STOP_TIMEOUT_S,
    extra_args: Sequence[str] = (),
) -> Iterator[str]:
    """Start ``python -m medgo.serve`` on 127.0.0.1, yield its base URL once the model is ready, stop it after.

    ``port=0`` picks a free port. The server's stdout and stderr go to ``log_path`` (a new
    temporary file by default). Raises :class:`MedgoError` with the log's last lines when the
    server exits early or is not ready within ``ready_timeout_s``. On exit the server gets
    SIGTERM, then SIGKILL after ``stop_timeout_s``.
    """
    log_path = Path(log_path) if log_path else Path(tempfile.mkdtemp(prefix="medgo-serve-")) / "server.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        process, base_url = _start_until_ready(
            log_file,
            log_path,
            port=port,
            ready_timeout_s=ready_timeout_s,
            command_for_port=lambda p: server_command(
                str(model_uri),
                port=p,
                model_name=model_name,
                adapter_uri=str(adapter_uri) if adapter_uri else None,
                max_new_tokens=max_new_tokens,
                extra_args=extra_args,
            ),
            ready_path=model_ready_path(model_name),
        )
        try:
            yield base_url
        finally:
            stop_process_tree(process, timeout_s=stop_timeout_s)
            log.info(
                "local model server stopped", extra=fields(pid=process.pid, exit_code=process.returncode)
            )


def feedback_service_command(db_path: str, *, port: int, tokens_dir: str | None = None) -> list[str]:
    """The ``python -m medgo.serve.feedback_service`` command line on loopback."""
    command = [
        sys.executable,
        "-m",
        "medgo.serve.feedback_service",
        "--db_path",
        str(db_path),
        "--host",
        LOOPBACK,
        "--port",
        str(port),
    ]
    return command + (["--tokens_dir", str(tokens_dir)] if tokens_dir else [])


@contextmanager
def feedback_service_locally(
    db_path: str | os.PathLike,
    *,
    tokens_dir: str | os.PathLike | None = None,
    port: int = 0,
    log_path: str | os.PathLike | None = None,
    ready_timeout_s: float = 60.0,
) -> Iterator[str]:
    """Start the ``medgo-feedback`` service on 127.0.0.1, yield its base URL once healthy, stop it after."""
    log_path = (
        Path(log_path) if log_path else Path(tempfile.mkdtemp(prefix="medgo-feedback-")) / "service.log"
    )
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as log_file:
        process, base_url = _start_until_ready(
            log_file,
            log_path,
            port=port,
            ready_timeout_s=ready_timeout_s,
            command_for_port=lambda p: feedback_service_command(
                str(db_path), port=p, tokens_dir=str(tokens_dir) if tokens_dir else None
            ),
            ready_path="/healthz",
        )
        try:
            yield base_url
        finally:
            stop_process_tree(process, timeout_s=DEFAULT_STOP_TIMEOUT_S)


def _start_until_ready(
    log_file: BinaryIO,
    log_path: Path,
    *,
    port: int,
    ready_timeout_s: float,
    command_for_port: Callable[[int], list[str]],
    ready_path: str,
) -> tuple[subprocess.Popen, str]:
    """Start the server and wait for readiness; a port chosen here and taken meanwhile is replaced."""
    started = time.monotonic()
    for _ in range(1 if port else _PORT_ATTEMPTS):
        chosen_port = port or free_port()
        base_url = f"http://{LOOPBACK}:{chosen_port}"
        log_offset = log_path.stat().st_size
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            command_for_port(chosen_port),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            env=env,
        )
        try:
            wait_until_ready(
                process,
                base_url + ready_path,
                deadline=started + ready_timeout_s,
                log_path=log_path,
                log_offset=log_offset,
            )
        except _PortTaken:
            stop_process_tree(process, timeout_s=DEFAULT_STOP_TIMEOUT_S)
            if port:
                raise MedgoError(
                    f"port {port} on {LOOPBACK} is already in use; pick another or pass port=0"
                ) from None
            log.warning("port taken before the server bound it; retrying", extra=fields(port=chosen_port))
            continue
        except BaseException:
            stop_process_tree(process, timeout_s=DEFAULT_STOP_TIMEOUT_S)
            raise
        log.info(
            "local model server ready",
            extra=fields(
                url=base_url, pid=process.pid, log=str(log_path), seconds=round(time.monotonic() - started, 1)
            ),
        )
        return process, base_url
    raise MedgoError(f"could not find a free port for the model server after {_PORT_ATTEMPTS} attempts")


def wait_until_ready(
    process: subprocess.Popen, ready_url: str, *, deadline: float, log_path: Path, log_offset: int = 0
) -> None:
    """Poll ``ready_url`` until it answers 200, the process exits, or ``deadline`` (monotonic) passes."""
    with httpx.Client(timeout=2.0) as client:
        while True:
            if process.poll() is not None:
                _raise_exited(process, log_path, log_offset)
            try:
                if client.get(ready_url).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() >= deadline:
                raise MedgoError(
                    f"model server was not ready at {ready_url} in time; last log lines "
                    f"({log_path}):\n{log_tail(log_path, _LOG_TAIL_LINES, offset=log_offset)}"
                )
            try:
                process.wait(timeout=_PROBE_INTERVAL_S)
            except subprocess.TimeoutExpired:
                pass


def _raise_exited(process: subprocess.Popen, log_path: Path, log_offset: int) -> None:
    tail = log_tail(log_path, _LOG_TAIL_LINES, offset=log_offset)
    if "address already in use" in tail.lower():
        raise _PortTaken()
    raise MedgoError(
        f"model server exited with code {process.returncode} before it was ready; "
        f"last log lines ({log_path}):\n{tail}"
    )


def ask(
    base_url: str,
    question: str,
    *,
    model: str = "medgo",
    max_tokens: int = 32,
    system: str | None = None,
    temperature: float | None = None,
    timeout_s: float = 120.0,
) -> str:
    """Ask the server one question through its OpenAI-compatible chat route; returns the answer text.

    ``system`` replaces the server's default system prompt. Raises :class:`MedgoError` when the
    server cannot be reached or refuses the request.
    """
    messages = ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": question}
    ]
    body: dict = {"model": model, "messages": messages, "max_tokens": max_tokens}
    if temperature is not None:
        body["temperature"] = temperature
    url = base_url.rstrip("/") + chat_completions_path()
    try:
        response = httpx.post(url, json=body, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise MedgoError(f"cannot reach the model server at {base_url}: {exc}") from None
    if response.status_code != 200:
        raise MedgoError(
            f"model server at {base_url} refused the question: HTTP {response.status_code}: "
            f"{_error_message(response)}"
        )
    try:
        return response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise MedgoError(f"model server at {base_url} sent a malformed chat completion") from None


def _error_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
    except ValueError:
        return response.text[:200]
    if isinstance(error, dict):
        return str(error.get("message", error))
    return str(error)
