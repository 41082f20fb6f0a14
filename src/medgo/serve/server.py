"""The medgo model server: KServe's ``ModelServer`` with one :class:`MedgoModel` and OpenAI chat routes.

``python -m medgo.serve`` is the serving image's entry point (the ``medgo-cpu`` ServingRuntime
passes ``--model_name`` and ``--model_dir=/mnt/models``) and what ``medgo.serve.local`` starts on a
laptop. It takes KServe's standard arguments (``--http_port``, ``--grpc_port``, ``--enable_grpc``,
…) plus medgo's own.
"""

from __future__ import annotations

import argparse
import logging
import sys
import warnings
from collections.abc import Mapping, Sequence
from typing import Any

from kserve import ModelServer
from kserve import model_server as kserve_model_server

from medgo.config import FeedbackConfig, ServeConfig, load_config
from medgo.errors import ConfigError, MedgoError
from medgo.logs import fields, setup_logging
from medgo.serve.feedback_api import add_feedback_arguments, feedback_config_from_args, mount_feedback
from medgo.serve.model import MedgoModel
from medgo.serve.openai_api import register_openai_routes

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
        await super()._serve()


def build_parser() -> argparse.ArgumentParser:
    """KServe's model server arguments plus medgo's model and generation settings."""
    defaults = ServeConfig.model_fields
    parser = argparse.ArgumentParser(
        prog="python -m medgo.serve",
        parents=[kserve_model_server.parser],
        description="Serve a medgo chat model with KServe v1/v2 and OpenAI-compatible chat routes.",
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
    parser.add_argument(
        "--max_new_tokens",
        type=int,
        default=defaults["max_new_tokens"].default,
        help="most tokens per answer; also the default when a request does not say",
    )
    parser.add_argument(
        "--max_prompt_tokens",
        type=int,
        default=defaults["max_prompt_tokens"].default,
        help="longest accepted prompt in tokens, after the chat template",
    )
    parser.add_argument(
        "--max_batch_size",
        type=int,
        default=defaults["max_batch_size"].default,
        help=defaults["max_batch_size"].description,
    )
    parser.add_argument(
        "--system_prompt",
        default=defaults["system_prompt"].default,
        help=defaults["system_prompt"].description,
    )
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
    feedback: FeedbackConfig | None = None,
) -> None:
    """Load the model and serve it until SIGTERM/SIGINT (blocking).

    ``server_options`` are further ``ModelServer`` keyword arguments (see :func:`kserve_server_options`).
    """
    model = MedgoModel.from_config(config)
    model.load()
    server = MedgoModelServer(
        http_host=config.host,
        http_port=config.http_port,
        grpc_port=config.grpc_port,
        enable_grpc=enable_grpc,
        workers=1,
        **dict(server_options or {}),
    )
    responses = mount_feedback(kserve_model_server.app, feedback) if feedback else None
    register_openai_routes(kserve_model_server.app, server.registered_models, responses)
    log.info(
        "starting model server",
        extra=fields(
            model=config.model_name,
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
            max_new_tokens=args.max_new_tokens,
            max_prompt_tokens=args.max_prompt_tokens,
            max_batch_size=args.max_batch_size,
            system_prompt=args.system_prompt,
        )
        run(
            config,
            enable_grpc=args.enable_grpc,
            server_options=kserve_server_options(args),
            feedback=feedback_config_from_args(args),
        )
    except MedgoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
