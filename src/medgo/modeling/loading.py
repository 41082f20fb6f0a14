"""Load models and tokenizers the way production does: ``from_pretrained`` on a local path,
a PVC mount or an ``s3://`` prefix (downloaded through :mod:`medgo.storage`).

The attention backend is chosen once: FlashAttention-2 when CUDA and ``flash_attn`` are both
present, otherwise PyTorch SDPA, and the choice is logged.

Evaluation and serving share :func:`load_for_inference`: one download per ``s3://`` URI, one
rule for where the tokenizer lives (:func:`tokenizer_source`), one set of stop tokens
(:func:`stop_token_ids`), and a device map across GPUs when there are several.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import get_args

from medgo.config import AttentionBackend
from medgo.errors import InputError, MedgoError
from medgo.logs import fields
from medgo.storage import localize

log = logging.getLogger(__name__)
_logged_backend: set[str] = set()


def flash_attention_available() -> bool:
    """True when FlashAttention-2 can run: a CUDA device and the ``flash_attn`` package."""
    import torch

    return torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None


def resolve_attn_implementation(requested: str = "auto") -> str:
    """Map ``auto|flash_attention_2|sdpa|eager`` to a backend this machine can run.

    An explicit ``flash_attention_2`` request on a machine without it is an error (the user
    asked for something specific); ``auto`` falls back to SDPA with a log line.
    """
    if requested not in get_args(AttentionBackend):
        raise MedgoError(f"unknown attention implementation {requested!r}")
    if requested == "flash_attention_2" and not flash_attention_available():
        raise MedgoError(
            "attn_implementation=flash_attention_2 needs a CUDA GPU and the flash-attn package "
            "(install medgo[gpu] in the trainer image); use 'auto' to fall back to SDPA"
        )
    if requested == "auto":
        chosen = "flash_attention_2" if flash_attention_available() else "sdpa"
        if chosen not in _logged_backend:
            _logged_backend.add(chosen)
            reason = (
                "CUDA and flash-attn present"
                if chosen == "flash_attention_2"
                else "flash-attn unavailable (no CUDA or package missing); falling back to SDPA"
            )
            log.info("attention backend", extra=fields(backend=chosen, reason=reason))
        return chosen
    return requested


#: File-name patterns of everything a tokenizer (and its chat template) may need; an ``s3://``
#: tokenizer read fetches only these, never the weights. ``adapter_config.json`` is fetched so an
#: adapter-only directory can be followed to its base model.
ADAPTER_CONFIG = "adapter_config.json"

TOKENIZER_FILES = (
    "tokenizer*",
    "special_tokens_map.json",
    "chat_template*",
    "vocab*",
    "merges.txt",
    "*.model",
    "added_tokens.json",
    "config.json",
    "generation_config.json",
    "adapter_config.json",
)


def _model_dir(uri: str, what: str) -> Path:
    path = localize(uri, what=what)
    if not (path / "config.json").exists() and not (path / ADAPTER_CONFIG).exists():
        raise InputError(f"{what} at {uri} has no config.json or adapter_config.json; not a saved model")
    return path


def _has_tokenizer(directory: Path) -> bool:
    return (directory / "tokenizer_config.json").exists() or (directory / "tokenizer.json").exists()


def is_adapter_dir(directory: str | Path) -> bool:
    """A LoRA adapter saved on its own: ``adapter_config.json`` without a model ``config.json``."""
    directory = Path(directory)
    return (directory / ADAPTER_CONFIG).exists() and not (directory / "config.json").exists()


def resolve_model_dirs(model_uri: str, adapter_uri: str | None = None) -> tuple[Path, Path | None]:
    """Local ``(model_dir, adapter_dir)`` for a model URI and an optional adapter URI.

    A ``model_uri`` that is itself an adapter directory stands for the base model it records plus
    that adapter, so callers may pass a trained adapter wherever a model is expected.
    """
    model_dir = _model_dir(model_uri, "model")
    adapter_dir = _model_dir(adapter_uri, "adapter") if adapter_uri else None
    if is_adapter_dir(model_dir):
        if adapter_dir is not None:
            raise InputError(
                f"model {model_uri} is itself a LoRA adapter; give its base model as the model "
                f"to apply adapter {adapter_uri}"
            )
        adapter_dir = model_dir
        model_dir = _model_dir(adapter_base_model(model_dir), "base model")
    return model_dir, adapter_dir


def adapter_base_model(adapter_dir: Path) -> str:
    """The base model an adapter directory records (a path, hub id or ``s3://`` URI)."""
    config = Path(adapter_dir) / ADAPTER_CONFIG
    try:
        base = json.loads(config.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except (OSError, json.JSONDecodeError) as exc:
        raise InputError(f"cannot read {config}: {exc}") from None
    if not base:
        raise InputError(
            f"{config} records no base_model_name_or_path; pass the base model as model_uri "
            "and this directory as adapter_uri"
        )
    return str(base)


def tokenizer_source(model_dir: Path, adapter_dir: Path | None = None) -> str:
    """Where the tokenizer of a (model, adapter) pair lives.

    An adapter directory with its own tokenizer files wins (SFT/DPO save one, possibly with a
    new chat template); otherwise the model directory. A model directory that is itself an
    adapter (``adapter_config.json``, no ``config.json``) without tokenizer files defers to the
    base model it records, which may be an ``s3://`` URI (:func:`load_tokenizer` resolves it).
    """
    model_dir = Path(model_dir)
    if adapter_dir is not None and _has_tokenizer(Path(adapter_dir)):
        return str(adapter_dir)
    if is_adapter_dir(model_dir) and not _has_tokenizer(model_dir):
        return adapter_base_model(model_dir)
    return str(model_dir)


def stop_token_ids(tokenizer, model) -> list[int]:
    """The ids that end an answer: the tokenizer's EOS and the model's generation-config EOS ids.

    Chat models often end a turn with a token (``<|im_end|>``) other than the tokenizer's EOS,
    recorded only in ``generation_config.json``; generation must stop on either.
    """
    configured = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    ids = set(configured) if isinstance(configured, list | tuple) else {configured}
    ids.add(tokenizer.eos_token_id)
    return sorted(i for i in ids if i is not None)


def load_tokenizer(uri: str, *, require_chat_template: bool = False):
    """Load a tokenizer; with ``require_chat_template`` fail early if it cannot format chats.

    From ``s3://`` only the tokenizer files (:data:`TOKENIZER_FILES`) are downloaded. An
    adapter-only directory without a tokenizer falls back to its base model's.
    """
    from transformers import AutoTokenizer

    path = localize(uri, what="tokenizer", include=TOKENIZER_FILES)
    if path.is_dir() and not _has_tokenizer(path) and is_adapter_dir(path):
        return load_tokenizer(adapter_base_model(path), require_chat_template=require_chat_template)
    tok = AutoTokenizer.from_pretrained(str(path))
    if require_chat_template and not tok.chat_template:
        raise InputError(f"tokenizer at {uri} has no chat template; SFT/DPO/serving need one")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(
    uri: str,
    *,
    adapter_uri: str | None = None,
    attn_implementation: str = "auto",
    dtype=None,
    trainable_adapter: bool = False,
    device_map: str | dict | None = None,
):
    """Load a causal LM from ``uri``, optionally with a LoRA adapter from ``adapter_uri``.

    ``uri`` may itself be an adapter directory (``adapter_config.json``), in which case its
    recorded base model is loaded first. ``trainable_adapter`` loads the adapter with
    ``is_trainable=True`` (to continue training it); ``device_map`` is passed to
    ``from_pretrained`` (``"auto"`` shards a model too big for one GPU across all of them).
    """
    import torch
    from transformers import AutoModelForCausalLM

    path, adapter_path = resolve_model_dirs(uri, adapter_uri)
    options = {"device_map": device_map} if device_map is not None else {}
    model = AutoModelForCausalLM.from_pretrained(
        str(path),
        attn_implementation=resolve_attn_implementation(attn_implementation),
        dtype=dtype or torch.float32,
        **options,
    )
    if adapter_path is not None:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(adapter_path), is_trainable=trainable_adapter)
    return model


def inference_placement(device: str | None = None) -> tuple[str | None, str | None]:
    """``(device, device_map)`` for inference: exactly one of the two is set.

    An explicit ``device`` puts the whole model there. Otherwise: several visible CUDA GPUs →
    ``device_map="auto"`` (a 72B model fits no single GPU); one GPU → ``"cuda"``; else ``"cpu"``.
    """
    import torch

    if device is not None:
        return device, None
    if torch.cuda.is_available():
        return (None, "auto") if torch.cuda.device_count() > 1 else ("cuda", None)
    return "cpu", None


def input_device(model):
    """The device a model's inputs go to (its embedding's device; the first shard under a device map)."""
    return model.get_input_embeddings().weight.device


def load_for_inference(
    model_uri: str,
    adapter_uri: str | None = None,
    *,
    device: str | None = None,
    dtype=None,
    merge_adapter: bool = False,
    require_chat_template: bool = True,
    attn_implementation: str = "auto",
):
    """Load ``(model, tokenizer)`` for evaluation or serving, in eval mode.

    Each ``s3://`` URI is downloaded once and everything after reads the local copy. The
    model may be a full checkpoint, a base model plus ``adapter_uri``, or an adapter-only
    directory (its recorded base model is loaded). The tokenizer follows
    :func:`tokenizer_source`. Placement follows :func:`inference_placement`; ``dtype`` defaults
    to bfloat16 on CUDA and float32 on CPU. ``merge_adapter`` folds a LoRA adapter into the
    weights (faster generation, a plain transformers model).
    """
    import torch

    model_dir, adapter_dir = resolve_model_dirs(model_uri, adapter_uri)
    tokenizer = load_tokenizer(
        tokenizer_source(model_dir, adapter_dir), require_chat_template=require_chat_template
    )
    target, device_map = inference_placement(device)
    if dtype is None:
        on_gpu = device_map is not None or torch.device(target).type == "cuda"
        dtype = torch.bfloat16 if on_gpu else torch.float32
    model = load_model(
        str(model_dir),
        adapter_uri=str(adapter_dir) if adapter_dir else None,
        attn_implementation=attn_implementation,
        dtype=dtype,
        device_map=device_map,
    )
    if merge_adapter and adapter_dir is not None:
        model = model.merge_and_unload()
    if device_map is None:
        model = model.to(target)
    return model.eval(), tokenizer
