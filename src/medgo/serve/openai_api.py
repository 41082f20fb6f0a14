"""OpenAI-compatible routes on KServe's FastAPI app.

KServe 0.21 registers its own ``/openai/v1/...`` routes only for vLLM-backed models (its request
types import vLLM), which a CPU model server does not have. medgo therefore adds the routes chat
clients need to the same app, under the same prefix (``KSERVE_OPENAI_ROUTE_PREFIX``, default
``/openai``):

* ``POST {prefix}/v1/chat/completions`` and ``POST {prefix}/v1/completions``, with
  ``stream=true`` as server-sent events (``data: {...}`` chunks, then ``data: [DONE]``; with
  ``stream_options.include_usage`` a last chunk carries the usage);
* ``GET {prefix}/v1/models`` and ``GET {prefix}/v1/models/{model}``.

Every served name works: the model's own and its alias (the name KServe's vLLM runtime gives
the LoRA adapter, ``<name>-lora``), so one name reaches the fine-tuned model on CPU and GPU.

Parameters are validated against the schema below, which is also the OpenAPI schema of the
routes. Parameters the server cannot honour (tools, logprobs, response_format, n > 1, ...) are
refused with a 400 naming them, unless they carry their no-op value; unknown parameters are
refused too. Errors use OpenAI's body (``{"error": {"message", "type", "param", "code"}}``) so
the official clients raise their usual exceptions, and never echo the client's text.

The response ``id`` is the request id (the client's ``x-request-id``, or one generated and
echoed in that header): feedback on a response names it, and the response log keeps the prompt and answer
under it (see :mod:`medgo.serve.response_log`).
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response, StreamingResponse
from kserve.errors import InvalidInput, ModelNotReady
from kserve.model_repository import ModelRepository
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from medgo.chat import Messages
from medgo.logs import fields
from medgo.serve.generation import (
    MAX_STOP_SEQUENCES,
    SEED_MAX,
    SEED_MIN,
    ChatMessage,
    Completion,
    GenerationParams,
    parse_generation_params,
)
from medgo.serve.middleware import current_request, new_request_id
from medgo.serve.model import (
    ClientDisconnected,
    GenerationFailed,
    GenerationTimeout,
    MedgoModel,
    ServerBusy,
)
from medgo.serve.paths import openai_route_prefix

log = logging.getLogger(__name__)

#: OpenAI's default ``max_tokens`` of the legacy completions route.
COMPLETIONS_DEFAULT_MAX_TOKENS = 16

StopStrings = str | Annotated[list[Annotated[str, StringConstraints(min_length=1)]], Field(max_length=4)]

#: Parameters of OpenAI's API this server does not implement: refused unless they hold a no-op value.
_UNSUPPORTED_CHAT = {
    "tools": "tool calling",
    "tool_choice": "tool calling",
    "functions": "function calling",
    "function_call": "function calling",
    "parallel_tool_calls": "tool calling",
    "logprobs": "logprobs",
    "top_logprobs": "logprobs",
    "response_format": "response_format (JSON mode and structured outputs)",
    "logit_bias": "logit_bias",
    "audio": "audio output",
    "modalities": "output modalities other than text",
    "prediction": "predicted outputs",
    "web_search_options": "web search",
    "reasoning_effort": "reasoning_effort",
    "store": "store",
    "metadata": "metadata",
    "service_tier": "service_tier",
}
_UNSUPPORTED_COMPLETIONS = {
    "logprobs": "logprobs",
    "echo": "echo",
    "suffix": "suffix",
    "best_of": "best_of",
    "logit_bias": "logit_bias",
}
_NO_OP_VALUES = {
    "response_format": [{"type": "text"}],
    "modalities": [["text"]],
    "service_tier": ["auto", "default"],
    "best_of": [1],
    "top_logprobs": [0],
}


def _refuse_unsupported(raw: Any, unsupported: dict[str, str]) -> Any:
    if isinstance(raw, dict):
        for key, feature in unsupported.items():
            value = raw.get(key)
            if value in (None, False, "", [], {}) or value in _NO_OP_VALUES.get(key, []):
                continue
            raise ValueError(f"{key}: {feature} is not supported by this server")
    return raw


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool | None = Field(None, description="send a last chunk with the token usage")


class _SamplingRequest(BaseModel):
    """Fields shared by chat and text completions."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="a served model name (see GET /v1/models)")
    max_tokens: int | None = Field(None, ge=1, description="most tokens to generate")
    min_tokens: int | None = Field(None, ge=0, description="vLLM extension: no end before this many tokens")
    temperature: float | None = Field(None, ge=0.0, le=2.0, description="0 is greedy decoding")
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1, description="vLLM extension; 0 or -1 is off")
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    repetition_penalty: float | None = Field(None, gt=0.0, le=2.0, description="vLLM extension")
    stop: StopStrings | None = Field(None, description=f"up to {MAX_STOP_SEQUENCES} stop strings")
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX)
    n: int | None = Field(None, ge=1, description="only 1 is supported")
    stream: bool | None = False
    stream_options: StreamOptions | None = None
    user: str | None = Field(None, description="accepted and never logged")

    @model_validator(mode="after")
    def _one_choice_and_stream_options(self):
        if self.n not in (None, 1):
            raise ValueError("n: only n=1 is supported")
        if self.stream_options is not None and not self.stream:
            raise ValueError("stream_options: only allowed with stream=true")
        return self

    def generation_params(self, max_tokens: int | None) -> GenerationParams:
        settings = {
            "max_tokens": max_tokens,
            "min_tokens": self.min_tokens,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "top_k": self.top_k,
            "presence_penalty": self.presence_penalty,
            "frequency_penalty": self.frequency_penalty,
            "repetition_penalty": self.repetition_penalty,
            "stop": self.stop,
            "seed": self.seed,
        }
        return parse_generation_params({k: v for k, v in settings.items() if v is not None}, where="")

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_SamplingRequest):
    """The OpenAI chat completion request as this server honours it."""

    messages: list[ChatMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1, description="newer name of max_tokens; wins")
    tools: Any = None
    tool_choice: Any = None
    functions: Any = None
    function_call: Any = None
    parallel_tool_calls: Any = None
    logprobs: Any = None
    top_logprobs: Any = None
    response_format: Any = None
    logit_bias: Any = None
    audio: Any = None
    modalities: Any = None
    prediction: Any = None
    web_search_options: Any = None
    reasoning_effort: Any = None
    store: Any = None
    metadata: Any = None
    service_tier: Any = None

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, raw: Any) -> Any:
        return _refuse_unsupported(raw, _UNSUPPORTED_CHAT)

    def params(self) -> GenerationParams:
        max_tokens = self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens
        return self.generation_params(max_tokens)

    def conversation(self) -> Messages:
        return [message.as_template_turn() for message in self.messages]


class CompletionRequest(_SamplingRequest):
    """The OpenAI (legacy) text completion request: raw prompts, no chat template."""

    prompt: str | Annotated[list[str], Field(min_length=1)]
    logprobs: Any = None
    echo: Any = None
    suffix: Any = None
    best_of: Any = None
    logit_bias: Any = None

    @model_validator(mode="before")
    @classmethod
    def _unsupported(cls, raw: Any) -> Any:
        if isinstance(raw, dict) and isinstance(raw.get("prompt"), list):
            if any(isinstance(p, int | list) for p in raw["prompt"]):
                raise ValueError("prompt: token-id prompts are not supported; send text")
        return _refuse_unsupported(raw, _UNSUPPORTED_COMPLETIONS)

    def prompts(self) -> list[str]:
        return [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)

    def params(self) -> GenerationParams:
        return self.generation_params(
            self.max_tokens if self.max_tokens is not None else COMPLETIONS_DEFAULT_MAX_TOKENS
        )


# ------------------------------------------------------------------------------------------ errors


def openai_error(
    status_code: int,
    message: str,
    *,
    error_type: str = "invalid_request_error",
    param: str | None = None,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    """An error response in OpenAI's shape."""
    return JSONResponse(
        status_code=status_code,
        content={"error": {"message": message, "type": error_type, "param": param, "code": code}},
        headers=headers,
    )


#: Request-level failures and how they answer: (status, OpenAI error type).
_FAILURES: dict[type[Exception], tuple[int, str]] = {
    InvalidInput: (400, "invalid_request_error"),
    ServerBusy: (503, "server_overloaded"),
    ModelNotReady: (503, "server_error"),
    GenerationTimeout: (504, "timeout"),
    GenerationFailed: (500, "server_error"),
}
FAILURES = tuple(_FAILURES) + (ClientDisconnected,)


def failure_response(exc: Exception, *, openai: bool) -> Response:
    """The response to a request-level failure, in OpenAI's or KServe's error shape.

    Busy and not-ready answers carry ``Retry-After``; a client that disconnected gets 499
    (nginx's "client closed request"), which only the metrics and access log see.
    """
    if isinstance(exc, ClientDisconnected):
        return Response(status_code=499)
    status, error_type = next(v for k, v in _FAILURES.items() if isinstance(exc, k))
    headers = None
    if isinstance(exc, ServerBusy | ModelNotReady):
        headers = {"Retry-After": str(getattr(exc, "retry_after_s", 1))}
    if status >= 500 and not isinstance(exc, ServerBusy | ModelNotReady):
        log.error("request failed", extra=fields(error=type(exc).__name__, status=status))
    if openai:
        return openai_error(status, str(exc), error_type=error_type, headers=headers)
    return JSONResponse(status_code=status, content={"error": str(exc)}, headers=headers)


# ------------------------------------------------------------------------------------------ routes


def served_models(repository: ModelRepository) -> dict[str, MedgoModel]:
    """Every served model name (own names and aliases) → the model that answers it."""
    return {name: model for name, model in repository.get_models().items() if isinstance(model, MedgoModel)}


def model_card(name: str, model: MedgoModel) -> dict[str, Any]:
    return {"id": name, "object": "model", "created": model.created, "owned_by": "medgo", "root": model.name}


class OpenAIRoutes:
    """Route handlers bound to KServe's model repository, so models are looked up per request."""

    def __init__(self, repository: ModelRepository) -> None:
        self.repository = repository

    async def list_models(self) -> dict[str, Any]:
        models = sorted(served_models(self.repository).items(), key=lambda item: item[0] != item[1].name)
        return {"object": "list", "data": [model_card(name, model) for name, model in models]}

    async def retrieve_model(self, model: str) -> Response:
        served = served_models(self.repository).get(model)
        if served is None:
            return self._not_found(model)
        return JSONResponse(model_card(model, served))

    async def create_chat_completion(self, body: ChatCompletionRequest) -> Response:
        return await self._answer(body, [body.conversation()], chat=True)

    async def create_completion(self, body: CompletionRequest) -> Response:
        prompts = body.prompts()
        if body.stream and len(prompts) != 1:
            return openai_error(400, "stream=true takes exactly one prompt", param="prompt")
        return await self._answer(body, prompts, chat=False)

    async def _answer(
        self, body: ChatCompletionRequest | CompletionRequest, prompts: list, *, chat: bool
    ) -> Response:
        model = served_models(self.repository).get(body.model)
        if model is None:
            return self._not_found(body.model)
        context = current_request()
        request_id = context.request_id if context else new_request_id()
        try:
            params = body.params()
            if len(prompts) > model.max_batch_size:
                raise InvalidInput(
                    f"prompt: {len(prompts)} prompts; this server accepts at most {model.max_batch_size}"
                )
            if body.stream:
                pieces = await model.stream(prompts[0], params, request_id=request_id, context=context)
                return StreamingResponse(
                    self._sse(model, body, prompts[0], pieces, request_id, chat=chat),
                    media_type="text/event-stream",
                    headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
                )
            completions = await model.generate(prompts, params, request_id=request_id, context=context)
        except FAILURES as exc:
            return failure_response(exc, openai=True)
        for index, (prompt, completion) in enumerate(zip(prompts, completions, strict=True)):
            key = request_id if len(prompts) == 1 else f"{request_id}~{index}"
            await model.remember(key, body.model, _as_conversation(prompt), completion.text)
        return JSONResponse(_response_body(request_id, body.model, completions, chat=chat))

    async def _sse(
        self,
        model: MedgoModel,
        body: ChatCompletionRequest | CompletionRequest,
        prompt: Messages | str,
        pieces: AsyncIterator[str | Completion],
        request_id: str,
        *,
        chat: bool,
    ) -> AsyncIterator[str]:
        created = int(time.time())
        usage_field = {"usage": None} if body.include_usage else {}

        def chunk(choices: list[dict], **extra: Any) -> str:
            payload = {
                "id": request_id,
                "object": "chat.completion.chunk" if chat else "text_completion",
                "created": created,
                "model": body.model,
                "choices": choices,
                **usage_field,
                **extra,
            }
            return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"

        def choice(text: str | None, finish_reason: str | None, *, first: bool = False) -> dict:
            if not chat:
                return {"index": 0, "text": text or "", "finish_reason": finish_reason, "logprobs": None}
            delta: dict[str, Any] = {}
            if first:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            return {"index": 0, "delta": delta, "finish_reason": finish_reason, "logprobs": None}

        if chat:
            yield chunk([choice("", None, first=True)])
        completion: Completion | None = None
        try:
            async for item in pieces:
                if isinstance(item, str):
                    yield chunk([choice(item, None)])
                else:
                    completion = item
        except ClientDisconnected:
            return
        except FAILURES as exc:
            status, error_type = next(v for k, v in _FAILURES.items() if isinstance(exc, k))
            error = {"message": str(exc), "type": error_type, "param": None, "code": status}
            yield f"data: {json.dumps({'error': error})}\n\n"
            return
        if completion is None:
            return
        # Kept before the end is sent: once a client has the whole answer, feedback on it can find it.
        await model.remember(request_id, body.model, _as_conversation(prompt), completion.text)
        yield chunk([choice(None if chat else "", completion.finish_reason)])
        if body.include_usage:
            yield chunk([], usage=completion.usage.as_dict())
        yield "data: [DONE]\n\n"

    def _not_found(self, name: str) -> JSONResponse:
        served = ", ".join(sorted(served_models(self.repository))) or "none"
        return openai_error(
            404, f"the model is not served here (served: {served})", param="model", code="model_not_found"
        )


def _as_conversation(prompt: Messages | str) -> Messages:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else prompt


def _response_body(request_id: str, model_name: str, completions: list[Completion], *, chat: bool) -> dict:
    usage = {
        "prompt_tokens": sum(c.usage.prompt_tokens for c in completions),
        "completion_tokens": sum(c.usage.completion_tokens for c in completions),
    }
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    if chat:
        choices = [
            {
                "index": i,
                "message": {"role": "assistant", "content": c.text},
                "finish_reason": c.finish_reason,
                "logprobs": None,
            }
            for i, c in enumerate(completions)
        ]
    else:
        choices = [
            {"index": i, "text": c.text, "finish_reason": c.finish_reason, "logprobs": None}
            for i, c in enumerate(completions)
        ]
    return {
        "id": request_id,
        "object": "chat.completion" if chat else "text_completion",
        "created": int(time.time()),
        "model": model_name,
        "choices": choices,
        "usage": usage,
    }


def describe_request_errors(errors: Sequence[dict]) -> str:
    """FastAPI's validation errors as ``"field: rule"`` text, without the offending values."""
    problems = []
    for err in errors:
        loc = [part for part in err.get("loc", ()) if part != "body"]
        location = ""
        for part in loc:
            location += f"[{part}]" if isinstance(part, int) else (f".{part}" if location else str(part))
        if err.get("type") == "extra_forbidden":
            message = "unknown parameter"
        elif err.get("type") == "json_invalid":
            location, message = "", "request body is not valid JSON"
        elif err.get("type") == "missing" and not location:
            message = "request body is required"
        else:
            message = str(err.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(f"{location}: {message}" if location else message)
    return "; ".join(dict.fromkeys(problems)) or "invalid request"


def register_openai_routes(app: FastAPI, repository: ModelRepository) -> None:
    """Add the OpenAI-compatible routes to ``app`` (KServe's ``kserve.model_server.app``).

    Call before ``ModelServer.start``; registering twice on the same app is a no-op.
    """
    prefix = f"{openai_route_prefix()}/v1"
    if any(getattr(route, "path", None) == f"{prefix}/chat/completions" for route in app.router.routes):
        return
    routes = OpenAIRoutes(repository)
    router = APIRouter(prefix=prefix, tags=["OpenAI"])
    router.add_api_route("/models", routes.list_models, methods=["GET"])
    router.add_api_route("/models/{model}", routes.retrieve_model, methods=["GET"], response_model=None)
    router.add_api_route(
        "/chat/completions", routes.create_chat_completion, methods=["POST"], response_model=None
    )
    router.add_api_route("/completions", routes.create_completion, methods=["POST"], response_model=None)
    app.include_router(router)
    log.info("OpenAI-compatible routes registered", extra=fields(prefix=prefix))
