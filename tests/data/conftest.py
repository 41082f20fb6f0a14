"""Fixtures for the data-stage tests: inline JSONL writers and one tiny tokenizer per session."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest

from medgo.modeling.tiny import train_tokenizer

TOKENIZER_TEXTS = [
    "患者主诉头痛三天，伴恶心呕吐。体格检查：血压150/95mmHg。",
    "高血压患者应低盐饮食，规律服用降压药物，定期监测血压。",
    "糖尿病的典型症状包括多饮、多尿、多食和体重下降。",
    "阿莫西林胶囊用于敏感菌所致的呼吸道感染，成人一次0.5g，一日3次。",
    "The patient was admitted with chest pain and shortness of breath.",
] * 20

Line = str | bytes | dict


def _encode(line: Line, encoding: str) -> bytes:
    if isinstance(line, bytes):
        return line
    if isinstance(line, dict):
        line = json.dumps(line, ensure_ascii=False)
    return line.encode(encoding)


@pytest.fixture
def write_lines() -> Callable[..., Path]:
    """``write_lines(path, lines, encoding="utf-8")``: dicts as JSON, strings as is, bytes raw; ``.gz`` gzips."""

    def write(path: Path, lines: Iterable[Line], encoding: str = "utf-8") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        payload = b"".join(_encode(line, encoding) + b"\n" for line in lines)
        path.write_bytes(gzip.compress(payload) if path.name.endswith(".gz") else payload)
        return path

    return write


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def jsonl() -> Callable[[Path], list[dict]]:
    """Read a JSONL output file back as a list of dicts."""
    return read_jsonl


@pytest.fixture(scope="session")
def tiny_tokenizer(tmp_path_factory):
    """A byte-level BPE tokenizer with Qwen's special tokens, saved like a model's tokenizer."""
    tokenizer = train_tokenizer(TOKENIZER_TEXTS, vocab_size=600)
    out = tmp_path_factory.mktemp("tokenizer")
    tokenizer.save_pretrained(out)
    return tokenizer, out
