"""Shared fixtures: tiny models (the tiny template and Qwen2's stock ChatML) and real model servers on 127.0.0.1."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from medgo.modeling.qwen2 import QWEN2_CHAT_TEMPLATE
from medgo.modeling.tiny import build_tiny_model
from tests.serve.support import TEST_SERVER_ARGS

SAMPLE_TEXTS = [
    "高血压患者应低盐饮食，规律服药，定期监测血压。",
    "糖尿病患者需要控制血糖，注意饮食和运动，定期复查糖化血红蛋白。",
    "发热伴咳嗽三天，建议查血常规和胸片。",
    "头痛、恶心、呕吐时应及时就医，排除颅内病变。",
    "The patient reports chest pain and shortness of breath.",
]


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A random tiny Qwen2 with a ChatML chat template (built once, ~3 s)."""
    return build_tiny_model(tmp_path_factory.mktemp("tiny-model"), SAMPLE_TEXTS * 20, vocab_size=800)


@pytest.fixture(scope="session")
def qwen2_template_model_dir(tiny_model_dir, tmp_path_factory) -> Path:
    """The tiny model with Qwen2's stock chat template instead of its own."""
    copy = tmp_path_factory.mktemp("qwen2-template") / "model"
    shutil.copytree(tiny_model_dir, copy)
    (copy / "chat_template.jinja").write_text(QWEN2_CHAT_TEMPLATE, encoding="utf-8")
    return copy


@pytest.fixture(scope="session")
def server_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve-logs") / "server.log"


@pytest.fixture(scope="session")
def server_url(tiny_model_dir, server_log) -> str:
    """Base URL of ``python -m medgo.serve`` serving the tiny model as "medgo" (max 64 new tokens)."""
    from medgo.serve.local import serve_locally

    with serve_locally(
        tiny_model_dir,
        max_new_tokens=64,
        log_path=server_log,
        ready_timeout_s=120,
        extra_args=TEST_SERVER_ARGS,
    ) as url:
        yield url


@pytest.fixture(scope="session")
def qwen2_template_server_url(qwen2_template_model_dir, tmp_path_factory) -> str:
    """A server for the model with Qwen2's template, with no server system prompt (the template's default applies)."""
    from medgo.serve.local import serve_locally

    log_path = tmp_path_factory.mktemp("serve-logs-qwen2") / "server.log"
    with serve_locally(
        qwen2_template_model_dir,
        max_new_tokens=64,
        log_path=log_path,
        ready_timeout_s=120,
        extra_args=[*TEST_SERVER_ARGS, "--system_prompt", ""],
    ) as url:
        yield url


@dataclass(frozen=True)
class Served:
    """A running server, the model directory it serves and the system prompt it adds (None: none)."""

    url: str
    model_dir: Path
    system_prompt: str | None


@pytest.fixture(scope="session", params=["tiny-template", "qwen2-template"])
def served(request) -> Served:
    """Each server in turn: the tiny model's own chat template, then Qwen2's stock one."""
    from medgo.config import DEFAULT_SYSTEM_PROMPT

    if request.param == "tiny-template":
        return Served(
            request.getfixturevalue("server_url"),
            request.getfixturevalue("tiny_model_dir"),
            DEFAULT_SYSTEM_PROMPT,
        )
    return Served(
        request.getfixturevalue("qwen2_template_server_url"),
        request.getfixturevalue("qwen2_template_model_dir"),
        None,
    )
