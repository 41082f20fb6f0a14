"""Fixtures shared across test folders."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# DeepSpeed compiles a small C++ op on first use; keep the build cache between runs.
os.environ.setdefault("TORCH_EXTENSIONS_DIR", str(Path.home() / ".cache" / "medgo" / "torch_extensions"))

REPO_ROOT = Path(__file__).resolve().parents[1]
SAMPLES = REPO_ROOT / "samples"


@pytest.fixture(scope="session")
def samples_dir() -> Path:
    return SAMPLES


@pytest.fixture(scope="session")
def sample_model_dir(tmp_path_factory) -> Path:
    """The demo's tiny model: random Qwen2 weights, tokenizer trained on the bundled samples."""
    from medgo.modeling.tiny import build_tiny_model, iter_sample_texts

    return build_tiny_model(tmp_path_factory.mktemp("sample-model"), iter_sample_texts(SAMPLES))
