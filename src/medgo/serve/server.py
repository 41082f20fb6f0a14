"""The medgo model server: KServe's ``ModelServer`` with one :class:`MedgoModel` and OpenAI routes.

``python -m medgo.serve`` is the serving image's entry point (the ``medgo-cpu`` ServingRuntime
passes ``--model_name`` and ``--model_dir=/mnt/models``) and what ``medgo.serve.local`` starts on a
laptop. It takes KServe's standard arguments (``--http_port``, ``--grpc_port``, ``--enable_grpc``,
…) plus medgo's own (one per :class:`~medgo.config.ServeConfig` field).

Other features plug into the same app through :func:`run`'s ``routers``: each is a
:data:`RouterFactory` called with the :class:`ServerContext` (the model, its response log, the
config) and returning a FastAPI ``APIRouter``. Their routes get the same request ids, body limit,
metrics and error handling as the built-in ones.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from kserve import ModelServer
from kserve import model_server as kserve_model_server
from kserve.errors import InvalidInput, ModelNotFound, ModelNotReady
from kserve.model_repository import ModelRepository

from medgo.config import ServeConfig, load_config
from medgo.errors import ConfigError, MedgoError
from medgo.logs import fields, setup_logging
from medgo.serve.feedback_api import add_feedback_arguments, feedback_config_from_args, feedback_wiring
from medgo.serve.middleware import ServingMiddleware
from medgo.serve.model import ClientDisconnected, GenerationFailed, GenerationTimeout, MedgoModel, ServerBusy
from medgo.serve.openai_api import (
    describe_request_errors,
    failure_response,
    openai_error,
    register_openai_routes,
)
from medgo.serve.paths import openai_route_prefix
from medgo.serve.response_log import ResponseLog

log = logging.getLogger(__name__)

#: Where KServe binds inside a pod; a laptop run should pass ``--http_host 127.0.0.1``.
ALL_INTERFACES = "0.0.0.0"


class MedgoModelServer(ModelServer):
    """KServe's ``ModelServer`` whose REST server binds ``http_host`` instead of always ``0.0.0.0``.

    Binding every interface is right in a pod, but a developer's run of a medical model should
    stay on loopback. KServe 0.21 creates its uvicorn config inside ``start()`` with the host fixed,
    and uvicorn reads the host only when it starts listening, so the host is set on that config
    just before the servers are awaited. gRPC (when enabled) still listens on all interfaces.
    """

    def __init__(self, *, http_host: str = ALL_INTERFACES, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.http_host = http_host

    async def _serve(self) -> None:
        if self._rest_server is not None:
            self._rest_server.config.host = self.http_host
            create_application = self._rest_server.create_application

            def create_then_harden() -> None:
                create_application()
                # KServe's handlers echo model names and "<type> : <message>" texts, which can carry
                # client text, and log client errors with tracebacks; medgo's replace them.
                app = kserve_model_server.app
                app.add_exception_handler(Exception, _internal_error)
                app.add_exception_handler(InvalidInput, _invalid_input)
                app.add_exception_handler(ModelNotFound, _model_not_found)
                app.add_exception_handler(ModelNotReady, _request_failure)
                app.add_exception_handler(NotImplementedError, _not_implemented)

            self._rest_server.create_application = create_then_harden
        await super()._serve()


@dataclass(frozen=True)
class ServerContext:
    """What a plugged-in router may use: the served model, its response log, the config, KServe's registry."""

    config: ServeConfig
    model: MedgoModel
    response_log: ResponseLog
    repository: ModelRepository


#: Builds an extra router for the app (see the module doc).
RouterFactory = Callable[[ServerContext], APIRouter]


async def _invalid_input(request: Request, exc: InvalidInput) -> Response:
    return failure_response(exc, openai=_is_openai_path(request))


async def _model_not_found(request: Request, exc: ModelNotFound) -> JSONResponse:
    if _is_openai_path(request):
        return openai_error(404, "the model is not served here", code="model_not_found")
    return JSONResponse(status_code=404, content={"error": "the model is not served here"})


async def _not_implemented(request: Request, exc: NotImplementedError) -> Response:
    """KServe raises this for features a client asked for and it lacks (model versions): a client error."""
    return failure_response(
        InvalidInput(f"not supported by this server: {exc}"), openai=_is_openai_path(request)
    )


async def _internal_error(request: Request, exc: Exception) -> JSONResponse:
    log.error("unhandled error", exc_info=exc, extra=fields(path=request.url.path))
    return JSONResponse(status_code=500, content={"error": "internal server error"})


def _is_openai_path(request: Request) -> bool:
    return request.url.path.startswith(f"{openai_route_prefix()}/")


async def _request_validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    message = describe_request_errors(exc.errors())
    if _is_openai_path(request):
        return openai_error(400, message)
    return JSONResponse(status_code=400, content={"error": message})


async def _request_failure(request: Request, exc: Exception):
    return failure_response(exc, openai=_is_openai_path(request))


def configure_app(app: FastAPI, context: ServerContext, routers: Sequence[RouterFactory] = ()) -> None:
    """Middleware, error handlers, the OpenAI routes and the plugged-in routers on KServe's app."""
    if not any(m.cls is ServingMiddleware for m in app.user_middleware):
        app.add_middleware(ServingMiddleware, max_body_bytes=context.config.max_body_bytes)
    app.add_exception_handler(RequestValidationError, _request_validation_error)
    for failure in (ServerBusy, GenerationTimeout, GenerationFailed, ClientDisconnected):
        app.add_exception_handler(failure, _request_failure)
    register_openai_routes(app, context.repository)
    for factory in routers:
        app.include_router(factory(context))


#: ServeConfig fields that are plain ``--<field>`` options (model location and ports have their own).
_SETTING_OPTIONS = (
    "max_new_tokens",
    "max_prompt_tokens",
    "max_batch_size",
    "max_queue",
    "batch_wait_ms",
    "request_timeout_s",
    "max_body_bytes",
    "adapter_model_name",
    "system_prompt",
    "log_text",
    "torch_threads",
    "response_retention_s",
    "response_log_max_entries",
)


def _flag(value: str) -> bool:
    if value.lower() in {"1", "true", "yes", "on"}:
        return True
    if value.lower() in {"0", "false", "no", "off"}:
        return False
    raise argparse.ArgumentTypeError("expected true or false")


def build_parser() -> argparse.ArgumentParser:
    """KServe's model server arguments plus medgo's model and generation settings."""
    defaults = ServeConfig.model_fields
    parser = argparse.ArgumentParser(
        prog="python -m medgo.serve",
        parents=[kserve_model_server.parser],
        description="Serve a medgo chat model with KServe v1/v2 and OpenAI-compatible routes.",
    )
    parser.add_argument(
        "--model_uri",
        "--model_dir",
        dest="model_uri",
        required=True,
        help="saved model directory: local path, PVC mount or s3:// (KServe passes /mnt/models)",
    )
    parser.add_argument(
        "--adapter_uri", default=None, help="LoRA adapter to merge into the model at load time"
    )
    parser.add_argument(
        "--http_host",
        default=ALL_INTERFACES,
        help="interface the REST server binds; 127.0.0.1 keeps a local run off the network",
    )
    for name in _SETTING_OPTIONS:
        field = defaults[name]
        kind = {int: int, float: float, bool: _flag}.get(field.annotation, str)
        parser.add_argument(f"--{name}", type=kind, default=field.default, help=field.description)
    add_feedback_arguments(parser)
    parser.set_defaults(model_name=defaults["model_name"].default)
    return parser


def kserve_server_options(args: argparse.Namespace) -> dict[str, Any]:
    """The parsed KServe arguments that ``ModelServer.__init__`` takes."""
    names = (
        "max_threads",
        "max_asyncio_workers",
        "enable_docs_url",
        "enable_latency_logging",
        "access_log_format",
        "event_loop",
        "timeout_keep_alive",
        "ssl_certfile",
        "ssl_keyfile",
    )
    return {name: getattr(args, name) for name in names}


def run(
    config: ServeConfig,
    *,
    enable_grpc: bool = True,
    server_options: Mapping[str, Any] | None = None,
    response_log: ResponseLog | None = None,
    routers: Sequence[RouterFactory] = (),
) -> None:
    """Load the model and serve it until SIGTERM/SIGINT (blocking).

    ``server_options`` are further ``ModelServer`` keyword arguments (see :func:`kserve_server_options`).
    ``response_log`` keeps answered prompts by request id (default: in memory, ``config``'s
    retention); ``routers`` add routes to the app (see :class:`ServerContext`).
    """
    model = MedgoModel.from_config(config, response_log=response_log)
    model.load()
    server = MedgoModelServer(
        http_host=config.host,
        http_port=config.http_port,
        grpc_port=config.grpc_port,
        enable_grpc=enable_grpc,
        workers=1,
        **dict(server_options or {}),
    )
    for alias in model.aliases:  # the same model under the vLLM runtime's adapter name, on every protocol
        server.register_model(model, name=alias)
    context = ServerContext(
        config=config, model=model, response_log=model.response_log, repository=server.registered_models
    )
    configure_app(kserve_model_server.app, context, routers)
    log.info(
        "starting model server",
        extra=fields(
            model=config.model_name,
            names=",".join(model.served_names),
            host=config.host,
            http_port=config.http_port,
            grpc_port=config.grpc_port if enable_grpc else None,
        ),
    )
    server.start([model])


def main(argv: Sequence[str] | None = None) -> None:
    """Entry point of ``python -m medgo.serve``; user errors print one line and exit 2."""
    setup_logging()
    # KServe 0.21's own responses use ORJSONResponse, which FastAPI deprecates once per request path.
    warnings.filterwarnings("ignore", message="ORJSONResponse is deprecated")
    args = build_parser().parse_args(argv)
    try:
        if args.workers != 1:
            raise ConfigError(
                f"--workers {args.workers}: medgo serves one model copy per server process; "
                "scale with InferenceService replicas instead"
            )
        config = load_config(
            ServeConfig,
            model_uri=args.model_uri,
            model_name=args.model_name,
            adapter_uri=args.adapter_uri,
            host=args.http_host,
            http_port=args.http_port,
            grpc_port=args.grpc_port,
            **{name: getattr(args, name) for name in _SETTING_OPTIONS},
        )
        response_log, routers = feedback_wiring(feedback_config_from_args(args))
        run(
            config,
            enable_grpc=args.enable_grpc,
            server_options=kserve_server_options(args),
            response_log=response_log,
            routers=routers,
        )
    except MedgoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
