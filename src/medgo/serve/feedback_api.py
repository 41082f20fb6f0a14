"""The doctor feedback routes on the model server: ``POST {prefix}/v1/feedback`` and ``GET …/{id}``.

A doctor rates one served answer by its response id (the ``id`` of the chat completion)::

    POST /openai/v1/feedback
    Authorization: Bearer <write token>
    {"feedback_id": "fb-…", "response_id": "chatcmpl-…", "rating": "unacceptable",
     "corrected_answer": "…", "department": "cardiology", "doctor_id": "d-7f3a9c"}

* 201 with the stored entry (no text) the first time; 200 with the same entry when the same
  ``feedback_id`` is sent again with the same content (a client retry); 409 when the id was used
  for different content. Without ``feedback_id`` the server assigns one (then a retry is a new entry).
* 404 when the response id is unknown or older than the retention; 400 for a malformed body, a
  corrected answer on an *acceptable* rating, or a ``doctor_id`` that looks like a real identifier
  (phone, ID number, name): it must be a pseudonym.
* With tokens configured: 401 without a valid bearer token, 403 with a token that may only read.
  ``GET {prefix}/v1/feedback/{feedback_id}`` (read or write token) returns the entry without text.
* 503 (with ``Retry-After``) when the store cannot be reached; never a 5xx for client input.

Two ways to back the routes, one writer either way (see :mod:`medgo.feedback.store`):

* :func:`feedback_router` -- the store is in this process (one replica, or the ``medgo-feedback``
  service itself);
* :func:`proxy_feedback_router` -- the store is in the ``medgo-feedback`` service; requests are
  forwarded to it with their ``Authorization`` header, and its answer is passed back unchanged.

:func:`register_feedback_routes` mounts the first on an app. :func:`feedback_wiring` is what
``python -m medgo.serve`` calls with its ``--feedback_*`` options; it returns the response log the
server records every answer in, and the router factories that mount these routes.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sqlite3
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Protocol

import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, model_validator

from medgo.config import FeedbackConfig, FeedbackRating, load_config
from medgo.feedback.store import (
    FeedbackConflict,
    FeedbackStore,
    FeedbackSubmission,
    StoredResponse,
)
from medgo.feedback.tokens import Role, TokenSet, bearer_token
from medgo.logs import fields
from medgo.serve.generation import describe_validation_error
from medgo.serve.openai_api import openai_error
from medgo.serve.paths import feedback_path

log = logging.getLogger(__name__)

#: Largest accepted feedback body; a rating with a corrected answer is a few kilobytes.
MAX_BODY_BYTES = 64 * 1024
#: Seconds a client should wait before retrying when the store is unavailable.
RETRY_AFTER_S = 5

ShortText = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=128)]


class ResponseLookup(Protocol):
    """Where served answers are found by request id (the store itself, or the server's response log)."""

    def get(self, request_id: str) -> StoredResponse | None: ...


class FeedbackRequest(BaseModel):
    """The body of ``POST …/v1/feedback``; unknown fields are refused so a typo is not lost data."""

    model_config = ConfigDict(extra="forbid")

    feedback_id: ShortText | None = Field(
        None, description="client-chosen id that makes retries idempotent; assigned when absent"
    )
    response_id: ShortText = Field(description="id of the chat completion being rated")
    rating: FeedbackRating = Field(description="acceptable or unacceptable")
    corrected_answer: str | None = Field(None, description="the answer the doctor would have given")
    department: Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=64)] = Field(
        description="the doctor's department"
    )
    doctor_id: ShortText = Field(description="pseudonymous doctor id (never a name or staff number)")

    @model_validator(mode="after")
    def _correction_only_when_unacceptable(self) -> FeedbackRequest:
        if self.corrected_answer is not None:
            if not self.corrected_answer.strip():
                raise ValueError("corrected_answer must not be blank (leave it out instead)")
            if self.rating == "acceptable":
                raise ValueError("corrected_answer is only for rating 'unacceptable'")
        return self


def _pseudonym_problem(doctor_id: str) -> str | None:
    """Why ``doctor_id`` is not acceptable as a pseudonym, or None."""
    from medgo.data.pii import find_pii

    spans = find_pii(doctor_id)
    if spans:
        kinds = ", ".join(sorted({kind for _, _, kind in spans}))
        return f"doctor_id looks like a personal identifier ({kinds}); send the doctor's pseudonymous id"
    return None


def _unauthorized(message: str) -> JSONResponse:
    response = openai_error(401, message, error_type="authentication_error", code="invalid_api_key")
    response.headers["WWW-Authenticate"] = 'Bearer realm="medgo-feedback"'
    return response


def unavailable(message: str) -> JSONResponse:
    response = openai_error(503, message, error_type="server_error", code="feedback_store_unavailable")
    response.headers["Retry-After"] = str(RETRY_AFTER_S)
    return response


def authorize(tokens: TokenSet | None, request: Request, role: Role) -> JSONResponse | None:
    """None when the request may act as ``role``; else the 401 or 403 to answer."""
    if tokens is None:
        return None
    held = tokens.roles(bearer_token(request.headers.get("authorization")))
    if not held:
        return _unauthorized("a valid bearer token is required (Authorization: Bearer <token>)")
    if role not in held:
        return openai_error(
            403, f"this token may not {role} feedback", error_type="permission_error", code="forbidden"
        )
    return None


async def json_body(request: Request) -> dict | JSONResponse:
    body = await request.body()
    if len(body) > MAX_BODY_BYTES:
        return openai_error(413, f"request body is larger than {MAX_BODY_BYTES} bytes")
    try:
        data = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return openai_error(400, "request body is not valid JSON")
    if not isinstance(data, dict):
        return openai_error(400, "request body must be a JSON object")
    return data


def feedback_router(
    store: FeedbackStore,
    responses: ResponseLookup,
    tokens: TokenSet | None,
    *,
    max_corrected_chars: int = FeedbackConfig.model_fields["max_corrected_chars"].default,
) -> APIRouter:
    """The feedback routes over a store owned by this process; answers are looked up in ``responses``."""
    path = feedback_path()

    async def submit_feedback(request: Request) -> JSONResponse:
        if denied := authorize(tokens, request, "write"):
            return denied
        data = await json_body(request)
        if isinstance(data, JSONResponse):
            return data
        try:
            body = FeedbackRequest.model_validate(data)
        except ValidationError as exc:
            return openai_error(400, describe_validation_error(exc))
        if body.corrected_answer is not None and len(body.corrected_answer) > max_corrected_chars:
            return openai_error(
                400,
                f"corrected_answer is longer than {max_corrected_chars} characters",
                param="corrected_answer",
            )
        if problem := _pseudonym_problem(body.doctor_id):
            return openai_error(400, problem, param="doctor_id")
        submission = FeedbackSubmission(
            feedback_id=body.feedback_id or f"fb-{uuid.uuid4().hex}",
            response_id=body.response_id,
            rating=body.rating,
            department=body.department,
            doctor_id=body.doctor_id,
            corrected_answer=body.corrected_answer,
        )
        try:
            response = await asyncio.to_thread(responses.get, submission.response_id)
            if response is None:
                return openai_error(
                    404,
                    "response_id is unknown or older than the feedback retention",
                    param="response_id",
                    code="response_not_found",
                )
            entry, created = await asyncio.to_thread(store.submit, submission, response)
        except FeedbackConflict as exc:
            return openai_error(409, str(exc), param="feedback_id", code="feedback_id_reused")
        except (sqlite3.Error, OSError, httpx.HTTPError) as exc:
            log.error("feedback store unavailable", extra=fields(error=type(exc).__name__))
            return unavailable("the feedback store is unavailable; retry later")
        log.info(
            "feedback stored" if created else "feedback replayed",
            extra=fields(feedback_id=entry.feedback_id, response_id=entry.response_id, rating=entry.rating),
        )
        return JSONResponse(entry.summary(), status_code=201 if created else 200)

    async def get_feedback(feedback_id: str, request: Request) -> JSONResponse:
        if denied := authorize(tokens, request, "read"):
            return denied
        try:
            entry = await asyncio.to_thread(store.entry, feedback_id)
        except (sqlite3.Error, OSError) as exc:
            log.error("feedback store unavailable", extra=fields(error=type(exc).__name__))
            return unavailable("the feedback store is unavailable; retry later")
        if entry is None:
            return openai_error(404, "no feedback with this id", code="feedback_not_found")
        return JSONResponse(entry.summary())

    router = APIRouter(tags=["Feedback"])
    router.add_api_route(path, submit_feedback, methods=["POST"], response_model=None, status_code=201)
    router.add_api_route(path + "/{feedback_id}", get_feedback, methods=["GET"], response_model=None)
    return router


def proxy_feedback_router(service_url: str, *, timeout_s: float) -> APIRouter:
    """The feedback routes of a replica whose store lives in the ``medgo-feedback`` service.

    The service checks the token; this replica passes the request and the answer through.
    """
    base = service_url.rstrip("/")
    path = feedback_path()
    client = httpx.AsyncClient(timeout=timeout_s)

    async def forward(request: Request, method: str, url: str) -> JSONResponse:
        body = await request.body() if method == "POST" else None
        if body is not None and len(body) > MAX_BODY_BYTES:
            return openai_error(413, f"request body is larger than {MAX_BODY_BYTES} bytes")
        headers = {"content-type": "application/json"}
        if "authorization" in request.headers:
            headers["authorization"] = request.headers["authorization"]
        try:
            answer = await client.request(method, url, content=body, headers=headers)
            content = answer.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.error("feedback service unreachable", extra=fields(error=type(exc).__name__))
            return unavailable("the feedback service is unavailable; retry later")
        passed = {k: v for k, v in answer.headers.items() if k.lower() in {"retry-after", "www-authenticate"}}
        return JSONResponse(content, status_code=answer.status_code, headers=passed)

    async def submit_feedback(request: Request) -> JSONResponse:
        return await forward(request, "POST", base + path)

    async def get_feedback(feedback_id: str, request: Request) -> JSONResponse:
        return await forward(request, "GET", f"{base}{path}/{feedback_id}")

    router = APIRouter(tags=["Feedback"])
    router.add_api_route(path, submit_feedback, methods=["POST"], response_model=None, status_code=201)
    router.add_api_route(path + "/{feedback_id}", get_feedback, methods=["GET"], response_model=None)
    return router


def register_feedback_routes(
    app: FastAPI, store: FeedbackStore, responses: ResponseLookup, tokens: TokenSet | None
) -> None:
    """Mount :func:`feedback_router` on ``app``; mounting twice is a no-op."""
    if any(getattr(route, "path", None) == feedback_path() for route in app.router.routes):
        return
    app.include_router(feedback_router(store, responses, tokens))
    log.info("feedback routes registered", extra=fields(path=feedback_path(), auth=tokens is not None))


# -- python -m medgo.serve ------------------------------------------------------------------------------
def add_feedback_arguments(parser: argparse.ArgumentParser) -> None:
    """The model server's ``--feedback_*`` options (one per :class:`~medgo.config.FeedbackConfig` field)."""
    options = {
        "db_path": str,
        "service_url": str,
        "tokens_dir": str,
        "response_retention_s": float,
        "exported_retention_s": float,
        "max_corrected_chars": int,
        "service_timeout_s": float,
    }
    group = parser.add_argument_group("doctor feedback")
    for name, kind in options.items():
        spec = FeedbackConfig.model_fields[name]
        group.add_argument(
            f"--feedback_{name}",
            dest=f"feedback_{name}",
            type=kind,
            default=spec.default,
            help=spec.description,
        )


def feedback_config_from_args(args: argparse.Namespace) -> FeedbackConfig:
    prefix = "feedback_"
    values = {k[len(prefix) :]: v for k, v in vars(args).items() if k.startswith(prefix)}
    return load_config(FeedbackConfig, **values)


def feedback_wiring(config: FeedbackConfig) -> tuple[Any | None, list[Callable[[Any], APIRouter]]]:
    """The response log and the router factories the model server needs for the feedback ``config`` asks for.

    ``db_path``: the store lives in this process; it is also the server's response log, so every answer
    is kept durably for the feedback that rates it. ``service_url``: answers are recorded in, and
    feedback forwarded to, the ``medgo-feedback`` service. Neither: no feedback routes, and answers are
    kept only in the server's in-memory log. Pass both to :func:`medgo.serve.server.run`.
    """
    from medgo.feedback.client import RemoteResponseLog

    tokens = TokenSet(config.tokens_dir) if config.tokens_dir else None
    if config.db_path:
        store = FeedbackStore.from_config(config)
        return store, [lambda context: feedback_router(store, store, tokens)]
    if config.service_url:
        log.info("feedback forwarded to the feedback service", extra=fields(url=config.service_url))
        responses = RemoteResponseLog(
            config.service_url,
            token=tokens.token("record") if tokens else None,
            timeout_s=config.service_timeout_s,
        )
        router = proxy_feedback_router(config.service_url, timeout_s=config.service_timeout_s)
        return responses, [lambda context: router]
    return None, []
