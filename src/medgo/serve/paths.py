"""The server's URL layout, shared by the server and its light-weight clients (no torch/KServe imports)."""

from __future__ import annotations

import os


def openai_route_prefix() -> str:
    """KServe's prefix for OpenAI routes (``KSERVE_OPENAI_ROUTE_PREFIX``, default ``/openai``)."""
    prefix = os.environ.get("KSERVE_OPENAI_ROUTE_PREFIX", "/openai").rstrip("/")
    return prefix if not prefix or prefix.startswith("/") else f"/{prefix}"


def chat_completions_path() -> str:
    return f"{openai_route_prefix()}/v1/chat/completions"


def models_path() -> str:
    return f"{openai_route_prefix()}/v1/models"


def model_ready_path(model_name: str) -> str:
    """KServe v2 model readiness: 200 once the model is loaded and registered."""
    return f"/v2/models/{model_name}/ready"


def feedback_path() -> str:
    """Doctor feedback on a served answer (see :mod:`medgo.serve.feedback_api`)."""
    return f"{openai_route_prefix()}/v1/feedback"
