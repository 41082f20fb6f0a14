"""OpenAI-compatible chat routes on KServe's FastAPI app.

KServe 0.21 registers its own ``/openai/v1/...`` routes only for vLLM-backed models (its request
types import vLLM), which a CPU model server does not have. medgo therefore adds the two routes
chat clients need to the same app, under the same prefix (``KSERVE_OPENAI_ROUTE_PREFIX``,
default ``/openai``):

* ``POST {prefix}/v1/chat/completions`` -- non-streaming chat completions;
* ``GET {prefix}/v1/models`` -- the served models.

Errors use OpenAI's error body (``{"error": {"message", "type", "param", "code"}}``) so the
official clients raise their usual exceptions (``openai.BadRequestError`` for a 400).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from kserve.errors import InvalidInput
from kserve.model_repository import ModelRepository
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from medgo.chat import Messages
from medgo.logs import fields
from medgo.serve.generation import (
    ChatMessage,
    Completion,
    GenerationParams,
    describe_validation_error,
    parse_generation_params,
)
from medgo.serve.model import MedgoModel
from medgo.serve.paths import chat_completions_path, openai_route_prefix

log = logging.getLogger(__name__)


class ChatCompletionRequest(BaseModel):
    """The subset of OpenAI's chat completion request this server honours.

    Fields it does not know are ignored, as OpenAI-compatible servers commonly do, so clients
    that send defaults for every field keep working; fields whose requested behaviour it cannot
    provide (``stream``, ``n`` > 1) are refused instead.
    """

    model_config = ConfigDict(extra="ignore")

    model: str
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    n: int = 1
    stream: bool | None = False

    def generation_params(self) -> GenerationParams:
        """Generation settings; ``max_completion_tokens`` (the newer name) wins over ``max_tokens``."""
        max_tokens = self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
        settings = {
            "max_tokens": max_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "stop": self.stop,
            "seed": self.seed,
        }
        return parse_generation_params({k: v for k, v in settings.items() if v is not None}, where="")

    def conversation(self) -> Messages:
        return [message.as_template_turn() for message in self.messages]


def openai_error(
    status_code: int,
    message: str,
    *,
    error_type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
) -> JSONResponse:
    """An error response in OpenAI's shape."""
    return JSONResponse(
        status_code=status_code,
        content={"error": {"message": message, "type": error_type, "param": param, "code": code}},
    )


def chat_completion_body(
    model_name: str, completion: Completion, response_id: str | None = None, created: int | None = None
) -> dict[str, Any]:
    """A ``chat.completion`` object for one answer."""
    return {
        "id": response_id or f"chatcmpl-{uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": created or int(time.time()),
        "model": model_name,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": completion.text},
                "finish_reason": completion.finish_reason,
                "logprobs": None,
            }
        ],
        "usage": completion.usage.as_dict(),
    }


def chat_models(repository: ModelRepository) -> dict[str, MedgoModel]:
    """The registered models that can answer chats."""
    return {name: model for name, model in repository.get_models().items() if isinstance(model, MedgoModel)}


class OpenAIChatRoutes:
    """Route handlers bound to KServe's model repository, so models are looked up per request."""

    def __init__(self, repository: ModelRepository, responses: Any = None) -> None:
        self.repository = repository
        self.responses = responses  # where answers are recorded for feedback (medgo.serve.feedback_api)

    async def list_models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [
                {"id": name, "object": "model", "created": model.created, "owned_by": "medgo"}
                for name, model in chat_models(self.repository).items()
            ],
        }

    async def create_chat_completion(self, request: Request) -> JSONResponse:
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError):
            return openai_error(400, "request body is not valid JSON")
        if not isinstance(body, dict):
            return openai_error(400, "request body must be a JSON object")
        try:
            chat = ChatCompletionRequest.model_validate(body)
        except ValidationError as exc:
            return openai_error(400, describe_validation_error(exc))
        if chat.stream:
            return openai_error(
                400, "stream=true is not supported by this server; send stream=false", param="stream"
            )
        if chat.n != 1:
            return openai_error(400, "only n=1 is supported", param="n")
        model = chat_models(self.repository).get(chat.model)
        if model is None:
            served = ", ".join(sorted(chat_models(self.repository))) or "none"
            return openai_error(
                404,
                f"model '{chat.model}' is not served here (served: {served})",
                param="model",
                code="model_not_found",
            )
        if not model.ready:
            return openai_error(503, f"model '{chat.model}' is not ready", error_type="server_error")
        try:
            [completion] = await model.acomplete([chat.conversation()], chat.generation_params())
        except InvalidInput as exc:
            return openai_error(400, str(exc))
        response_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        if self.responses is not None:
            seen = model._with_system_prompt(chat.conversation())
            try:
                await asyncio.to_thread(
                    self.responses.record, response_id, model.name, seen, completion.text, created
                )
            except Exception as exc:  # a lost record costs one feedback entry, never the answer
                log.error("answer not recorded for feedback", extra=fields(error=type(exc).__name__))
        return JSONResponse(chat_completion_body(model.name, completion, response_id, created))


def register_openai_routes(app: FastAPI, repository: ModelRepository, responses: Any = None) -> None:
    """Add the OpenAI-compatible routes to ``app`` (KServe's ``kserve.model_server.app``).

    Call before ``ModelServer.start``; registering twice on the same app is a no-op.
    """
    prefix = openai_route_prefix()
    chat_path = chat_completions_path()
    if any(getattr(route, "path", None) == chat_path for route in app.router.routes):
        return
    routes = OpenAIChatRoutes(repository, responses)
    router = APIRouter(prefix=f"{prefix}/v1", tags=["OpenAI"])
    router.add_api_route("/models", routes.list_models, methods=["GET"])
    router.add_api_route(
        "/chat/completions", routes.create_chat_completion, methods=["POST"], response_model=None
    )
    app.include_router(router)
    log.info("OpenAI-compatible routes registered", extra=fields(prefix=f"{prefix}/v1"))
