"""What every HTTP request goes through before KServe's or medgo's routes see it.

:class:`ServingMiddleware` (plain ASGI, outermost of medgo's layers):

* **request id**: ``x-request-id`` is taken when it is a plain token (letters, digits and
  ``._:-``, at most 128 characters; anything else is a 400), otherwise one is generated; it is
  echoed in the response's ``x-request-id`` header and reaches the handlers as
  :func:`current_request`.
* **body size**: a ``Content-Length`` over ``max_body_bytes`` is refused with 413 before a byte
  is read; a body without one is read up to the cap and refused once it passes it. Nothing is
  parsed before this check, so an oversized body costs neither memory nor event-loop time.
* **disconnects**: once the body is in, a watcher waits for the client to go away and sets
  :attr:`RequestContext.disconnected`, so generation stops at the next decoding step.
* **metrics**: requests by route template, method and status, and their latency.

Error bodies name the rule, never the client's text.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
import uuid
from contextvars import ContextVar
from dataclasses import dataclass, field

from medgo.serve import metrics

REQUEST_ID_HEADER = "x-request-id"
REQUEST_ID_PATTERN = re.compile(r"[A-Za-z0-9._:\-]{1,128}")
#: Route label of requests that matched no route (404s), so random paths do not create series.
UNMATCHED_ROUTE = "unmatched"


@dataclass
class RequestContext:
    """The request being answered: its id and an event set when its client disconnects."""

    request_id: str
    disconnected: asyncio.Event = field(default_factory=asyncio.Event)
    started: float = field(default_factory=time.monotonic)


_current: ContextVar[RequestContext | None] = ContextVar("medgo_request", default=None)


def current_request() -> RequestContext | None:
    """The :class:`RequestContext` of the request this task answers (None outside a request)."""
    return _current.get()


def new_request_id(prefix: str = "") -> str:
    return f"{prefix}{uuid.uuid4().hex}"


class ServingMiddleware:
    """Request id, body-size limit, disconnect watch and request metrics (see the module doc)."""

    def __init__(self, app, *, max_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = {"code": 500}
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
        request_id = headers.get(REQUEST_ID_HEADER)
        try:
            if request_id is not None and not REQUEST_ID_PATTERN.fullmatch(request_id):
                request_id = new_request_id()
                await _plain_error(
                    send,
                    status,
                    400,
                    request_id,
                    "x-request-id must be 1-128 letters, digits or '._:-'",
                )
                return
            request_id = request_id or new_request_id()
            body = await self._read_body(receive, headers.get("content-length"), send, status, request_id)
            if body is None:
                return
            context = RequestContext(request_id=request_id)
            await self._call_app(scope, receive, send, status, context, body)
        finally:
            route = scope.get("route")
            label = getattr(route, "path", None) or UNMATCHED_ROUTE
            method = scope.get("method", "GET")
            metrics.REQUESTS.labels(route=label, method=method, status=str(status["code"])).inc()
            metrics.REQUEST_SECONDS.labels(route=label, method=method).observe(time.perf_counter() - started)

    async def _read_body(self, receive, content_length, send, status, request_id) -> bytes | None:
        """The whole body, or None after answering 413/400 (or when the client left mid-body)."""
        if content_length is not None:
            if not content_length.isdigit():
                await _plain_error(send, status, 400, request_id, "Content-Length must be a number of bytes")
                return None
            if int(content_length) > self.max_body_bytes:
                await _too_large(send, status, request_id, self.max_body_bytes)
                return None
        chunks, size = [], 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                status["code"] = 499
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body_bytes:
                await _too_large(send, status, request_id, self.max_body_bytes)
                return None
            chunks.append(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _call_app(self, scope, receive, send, status, context: RequestContext, body: bytes) -> None:
        body_sent = False

        async def replay_receive():
            nonlocal body_sent
            if not body_sent:
                body_sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            await context.disconnected.wait()
            return {"type": "http.disconnect"}

        async def watch_disconnect():
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    context.disconnected.set()
                    return

        async def send_with_id(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
                kept = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"x-request-id"]
                message = {**message, "headers": [*kept, (b"x-request-id", context.request_id.encode())]}
            await send(message)

        token = _current.set(context)
        watcher = asyncio.create_task(watch_disconnect())
        try:
            await self.app(scope, replay_receive, send_with_id)
        finally:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await watcher
            _current.reset(token)


async def _too_large(send, status, request_id: str, limit: int) -> None:
    await _plain_error(send, status, 413, request_id, f"request body is larger than {limit} bytes")


async def _plain_error(send, status, code: int, request_id: str, message: str) -> None:
    """An error answered before routing, in OpenAI's shape (``error.message``), which KServe clients read too."""
    body = json.dumps(
        {"error": {"message": message, "type": "invalid_request_error", "param": None, "code": None}}
    ).encode()
    status["code"] = code
    await send(
        {
            "type": "http.response.start",
            "status": code,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"x-request-id", request_id.encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
