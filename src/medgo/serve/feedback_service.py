"""``python -m medgo.serve.feedback_service``: the ``medgo-feedback`` service, sole writer of the store.

When the InferenceService runs several replicas, none of them may own the SQLite store (see
:mod:`medgo.feedback.store`): this small service does, on a ReadWriteOnce volume, as a single-replica
Deployment with the ``Recreate`` strategy (two pods never overlap). The replicas record every served
answer here and forward doctors' feedback here (``--feedback_service_url``). It serves:

* ``POST /openai/v1/feedback``, ``GET /openai/v1/feedback/{id}`` -- the public feedback routes
  (:func:`medgo.serve.feedback_api.feedback_router`), reached through the replicas;
* ``PUT|GET /internal/v1/responses/{request_id}`` -- the replicas' response log (token role ``record``);
* ``POST /internal/v1/exports`` -- export of entries not yet exported (role ``export``;
  body: a :class:`~medgo.config.FeedbackExportConfig`), called by the pipeline's export step;
* ``GET /healthz`` -- liveness/readiness with the store's counts (no text).

No model, no torch: it starts in about a second.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sqlite3
import sys
from collections.abc import Sequence
from typing import Annotated

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError

from medgo.config import FeedbackConfig, FeedbackExportConfig, load_config
from medgo.errors import MedgoError
from medgo.feedback.client import EXPORTS_PATH, RESPONSES_PATH
from medgo.feedback.export import export_pending
from medgo.feedback.store import FeedbackStore
from medgo.feedback.tokens import TokenSet
from medgo.logs import fields, setup_logging
from medgo.serve.feedback_api import authorize, feedback_router, json_body, unavailable
from medgo.serve.generation import describe_validation_error
from medgo.serve.openai_api import openai_error

log = logging.getLogger(__name__)


class _Turn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Annotated[str, StringConstraints(pattern=r"^(system|user|assistant)$")]
    content: str


class RecordedResponse(BaseModel):
    """A served answer sent by a replica."""

    model_config = ConfigDict(extra="forbid")

    model: Annotated[str, StringConstraints(min_length=1, max_length=128)]
    messages: list[_Turn] = Field(min_length=1)
    answer: str
    created: int = Field(ge=0)


def build_app(store: FeedbackStore, tokens: TokenSet | None, config: FeedbackConfig) -> FastAPI:
    """The service's app over ``store`` (owned by this process)."""
    app = FastAPI(title="medgo-feedback", docs_url=None, redoc_url=None)
    app.include_router(feedback_router(store, store, tokens, max_corrected_chars=config.max_corrected_chars))
    export_lock = asyncio.Lock()

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        try:
            return JSONResponse({"status": "ok", **await asyncio.to_thread(store.stats)})
        except sqlite3.Error:
            return unavailable("the feedback store is unavailable")

    @app.put(RESPONSES_PATH + "/{request_id}", response_model=None)
    async def record_response(request_id: str, request: Request) -> Response:
        if denied := authorize(tokens, request, "record"):
            return denied
        data = await json_body(request)
        if isinstance(data, JSONResponse):
            return data
        try:
            body = RecordedResponse.model_validate(data)
        except ValidationError as exc:
            return openai_error(400, describe_validation_error(exc))
        messages = [turn.model_dump() for turn in body.messages]
        try:
            await asyncio.to_thread(store.record, request_id, body.model, messages, body.answer, body.created)
        except sqlite3.Error as exc:
            log.error("response not recorded", extra=fields(error=type(exc).__name__))
            return unavailable("the feedback store is unavailable; retry later")
        return Response(status_code=204)

    @app.get(RESPONSES_PATH + "/{request_id}", response_model=None)
    async def get_response(request_id: str, request: Request) -> JSONResponse:
        if denied := authorize(tokens, request, "record"):
            return denied
        found = await asyncio.to_thread(store.get, request_id)
        if found is None:
            return openai_error(404, "unknown or expired response id", code="response_not_found")
        return JSONResponse(
            {
                "model": found.model,
                "messages": found.messages,
                "answer": found.answer,
                "created": found.created,
            }
        )

    @app.post(EXPORTS_PATH, response_model=None)
    async def export(request: Request) -> JSONResponse:
        if denied := authorize(tokens, request, "export"):
            return denied
        data = await json_body(request)
        if isinstance(data, JSONResponse):
            return data
        try:
            export_config = FeedbackExportConfig.model_validate(data)
        except ValidationError as exc:
            return openai_error(400, describe_validation_error(exc))
        async with export_lock:
            try:
                summary = await asyncio.to_thread(export_pending, store, export_config)
            except MedgoError as exc:
                return openai_error(400, str(exc))
            except (sqlite3.Error, OSError) as exc:
                log.error("export failed", extra=fields(error=type(exc).__name__))
                return unavailable("the export failed; retry later (exported entries are kept)")
        return JSONResponse(summary)

    return app


def build_parser() -> argparse.ArgumentParser:
    defaults = FeedbackConfig.model_fields
    parser = argparse.ArgumentParser(
        prog="python -m medgo.serve.feedback_service",
        description="The medgo-feedback service: sole writer of the doctor feedback store.",
    )
    parser.add_argument("--db_path", required=True, help=defaults["db_path"].description)
    parser.add_argument("--tokens_dir", default=None, help=defaults["tokens_dir"].description)
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (0.0.0.0 in a pod)")
    parser.add_argument("--port", type=int, default=8080, help="HTTP port")
    for name in ("response_retention_s", "exported_retention_s"):
        parser.add_argument(
            f"--{name}", type=float, default=defaults[name].default, help=defaults[name].description
        )
    parser.add_argument(
        "--max_corrected_chars",
        type=int,
        default=defaults["max_corrected_chars"].default,
        help=defaults["max_corrected_chars"].description,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Serve until SIGTERM; a bad option prints one ``error:`` line and exits 2."""
    import uvicorn

    setup_logging()
    args = build_parser().parse_args(argv)
    try:
        config = load_config(
            FeedbackConfig,
            db_path=args.db_path,
            tokens_dir=args.tokens_dir,
            response_retention_s=args.response_retention_s,
            exported_retention_s=args.exported_retention_s,
            max_corrected_chars=args.max_corrected_chars,
        )
        store = FeedbackStore.from_config(config)
        tokens = TokenSet(config.tokens_dir) if config.tokens_dir else None
    except MedgoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    log.info(
        "feedback service starting", extra=fields(host=args.host, port=args.port, auth=tokens is not None)
    )
    uvicorn.run(build_app(store, tokens, config), host=args.host, port=args.port, log_level="warning")


if __name__ == "__main__":
    main()
