"""Served answers kept by request id, so feedback on a response can be joined to what was asked.

A doctor's feedback names a response id (the request id; see :mod:`medgo.serve.middleware`);
the feedback store needs the prompt and the answer that id stands for, which only the server
knows. Every answered prompt is recorded in a :class:`ResponseLog` for ``retention_s``.

:class:`InMemoryResponseLog` is the default: bounded in age and count, lost on restart. A
durable store implements the same two methods and is handed to :func:`medgo.serve.server.run`.
The server calls ``record`` on a worker thread (never the event loop), so an implementation may
block briefly (a SQLite write); an exception there is logged and never fails the response.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from medgo.chat import Messages

DEFAULT_RETENTION_S = 7 * 24 * 3600
DEFAULT_MAX_ENTRIES = 10_000


@dataclass(frozen=True)
class LoggedResponse:
    """One answered prompt: the conversation the model saw (server system prompt included) and its answer."""

    request_id: str
    model: str
    messages: Messages
    answer: str
    created: int


@runtime_checkable
class ResponseLog(Protocol):
    """Where the server keeps answered prompts by request id."""

    def record(self, request_id: str, model: str, messages: Messages, answer: str, created: int) -> None:
        """Keep one answered prompt; a second record under the same id replaces the first."""

    def get(self, request_id: str) -> LoggedResponse | None:
        """The prompt and answer of ``request_id``, or None when unknown or past retention."""


class InMemoryResponseLog:
    """A :class:`ResponseLog` in process memory: the newest ``max_entries`` of the last ``retention_s``.

    Thread-safe. ``clock`` (seconds, like :func:`time.time`) is injectable for tests of retention.
    """

    def __init__(
        self,
        retention_s: float = DEFAULT_RETENTION_S,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        *,
        clock=time.time,
    ) -> None:
        if retention_s <= 0 or max_entries < 1:
            raise ValueError("retention_s must be positive and max_entries at least 1")
        self.retention_s = retention_s
        self.max_entries = max_entries
        self._clock = clock
        self._entries: OrderedDict[str, tuple[float, LoggedResponse]] = OrderedDict()
        self._lock = threading.Lock()

    def record(self, request_id: str, model: str, messages: Messages, answer: str, created: int) -> None:
        entry = LoggedResponse(request_id, model, [dict(m) for m in messages], answer, created)
        with self._lock:
            self._entries.pop(request_id, None)
            self._entries[request_id] = (self._clock(), entry)
            self._expire()

    def get(self, request_id: str) -> LoggedResponse | None:
        with self._lock:
            self._expire()
            item = self._entries.get(request_id)
        return item[1] if item else None

    def __len__(self) -> int:
        with self._lock:
            self._expire()
            return len(self._entries)

    def _expire(self) -> None:
        oldest_kept = self._clock() - self.retention_s
        while self._entries:
            request_id, (recorded, _) = next(iter(self._entries.items()))
            if recorded >= oldest_kept and len(self._entries) <= self.max_entries:
                break
            del self._entries[request_id]
