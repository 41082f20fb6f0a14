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
    """``write_lines(path, lines, encoding="utf-8")``: dicts as JSON, strings as is, bytes raw.

    ``.gz`` gzips and ``.zst`` zstd-compresses the file.
    """

    def write(path: Path, lines: Iterable[Line], encoding: str = "utf-8") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        newline = "\n".encode(encoding) if encoding.startswith("utf-16") else b"\n"
        payload = b"".join(_encode(line, encoding) + newline for line in lines)
        path.write_bytes(compress(payload, path.name))
        return path

    return write


@pytest.fixture
def compressed() -> Callable[[bytes, str], bytes]:
    """``compressed(payload, name)``: ``payload`` as a file called ``name`` holds it (gzip, zstd, plain)."""
    return compress


def compress(payload: bytes, name: str) -> bytes:
    """``payload`` compressed as a file called ``name`` would be (gzip, zstd, or not at all)."""
    if name.endswith(".gz"):
        return gzip.compress(payload, mtime=0)
    if name.endswith(".zst"):
        import zstandard

        return zstandard.ZstdCompressor(level=3).compress(payload)
    return payload


@pytest.fixture
def corpus_record() -> Callable[..., dict]:
    """``corpus_record(i, text=None, category="textbook")``: a valid corpus record with a long enough text."""

    def make(i: int, text: str | None = None, category: str = "textbook", **extra) -> dict:
        body = text if text is not None else synthetic_text(i)
        return {"id": f"d{i:05d}", "text": body, "category": category, "source": "test", **extra}

    return make


_SYLLABLES = (
    "患者主诉头痛发热咳嗽胸闷腹痛恶心呕吐乏力心悸气促水肿皮疹关节肿痛视物模糊耳鸣眩晕失眠多梦食欲减退"
    "高血压糖尿病冠心病肺炎胃炎肝炎肾病贫血甲亢哮喘支气管炎脑卒中骨折痛风类风湿抑郁焦虑过敏湿疹"
    "阿莫西林头孢布洛芬二甲双胍胰岛素阿司匹林他汀硝苯地平奥美拉唑维生素钙片铁剂叶酸地塞米松青霉素"
)


def synthetic_text(i: int, length: int = 120) -> str:
    """A deterministic Chinese medical-looking text, different for every ``i`` (pairwise Jaccard ≈ 0)."""
    import random

    rng = random.Random(i)
    chars = [rng.choice(_SYLLABLES) for _ in range(length)]
    for pos in range(17, length, 18):
        chars[pos] = "，" if rng.random() < 0.7 else "。"
    return "".join(chars) + "。"


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
