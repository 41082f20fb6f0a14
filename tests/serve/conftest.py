"""Shared fixtures: one tiny model and one real model server on 127.0.0.1 for the whole folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from medgo.modeling.tiny import build_tiny_model

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
def server_log(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("serve-logs") / "server.log"


@pytest.fixture(scope="session")
def server_url(tiny_model_dir, server_log) -> str:
    """Base URL of ``python -m medgo.serve`` serving the tiny model as "medgo" (max 64 new tokens)."""
    from medgo.serve.local import serve_locally

    with serve_locally(tiny_model_dir, max_new_tokens=64, log_path=server_log, ready_timeout_s=120) as url:
        yield url
