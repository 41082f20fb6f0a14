"""Child processes medgo starts and must stop: trainer nodes under torchrun, local model servers.

One place for the three things every launcher needs: a free loopback port, stopping a process
together with everything it started, and the tail of its log for an error message.
"""

from __future__ import annotations

import logging
import socket
import subprocess
from collections import deque
from pathlib import Path

from medgo.logs import fields

log = logging.getLogger(__name__)

LOOPBACK = "127.0.0.1"
DEFAULT_STOP_TIMEOUT_S = 15.0


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port that was free on ``host`` a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return sock.getsockname()[1]


def descendants(pid: int) -> list:
    """Every live process below ``pid`` (children, grandchildren, …) as ``psutil.Process`` objects."""
    import psutil

    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def stop_process_tree(process: subprocess.Popen, *, timeout_s: float = DEFAULT_STOP_TIMEOUT_S) -> None:
    """SIGTERM ``process`` and all its descendants, SIGKILL what is left after ``timeout_s``.

    Descendants are collected before anything is signalled: torchrun starts its workers in sessions
    of their own, so signalling a process group would miss them, and once torchrun exits they can no
    longer be found through it. The parent itself is waited for through ``process`` so that its exit
    code stays known. Returns once every one of them is gone.
    """
    import psutil

    tree = descendants(process.pid) if process.poll() is None else []
    signalled = []
    if process.poll() is None:
        process.terminate()
    for proc in tree:
        try:
            proc.terminate()
            signalled.append(proc)
        except psutil.NoSuchProcess:
            continue
    _, still_alive = psutil.wait_procs(signalled, timeout=timeout_s)
    try:
        process.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        log.warning("process ignored SIGTERM; killing it", extra=fields(pid=process.pid))
        process.kill()
        process.wait()
    for proc in still_alive:
        log.warning("process ignored SIGTERM; killing it", extra=fields(pid=proc.pid))
        try:
            proc.kill()
        except psutil.NoSuchProcess:
            continue
    psutil.wait_procs(still_alive, timeout=timeout_s)


def log_tail(path: str | Path, lines: int = 20, *, offset: int = 0) -> str:
    """The last ``lines`` lines of the log at ``path``, read from byte ``offset`` on."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        text = fh.read().decode("utf-8", errors="replace")
    return "\n".join(deque(text.splitlines(), maxlen=lines))
