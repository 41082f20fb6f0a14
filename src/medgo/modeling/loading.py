"""Load models and tokenizers the way production does: ``from_pretrained`` on a local path,
a PVC mount or an ``s3://`` prefix (downloaded through :mod:`medgo.storage`).

The attention backend is chosen once: FlashAttention-2 when CUDA and ``flash_attn`` are both
present, otherwise PyTorch SDPA, and the choice is logged.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path

from medgo.errors import InputError, MedgoError
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
    if requested not in {"auto", "flash_attention_2", "sdpa", "eager"}:
        raise MedgoError(f"unknown attention implementation {requested!r}")
    if requested == "flash_attention_2" and not flash_attention_available():
        raise MedgoError("attn_implementation=flash_attention_2 needs a CUDA GPU and the flash-attn package "
                         "(install medgo[gpu] in the trainer image); use 'auto' to fall back to SDPA")
    if requested == "auto":
        chosen = "flash_attention_2" if flash_attention_available() else "sdpa"
        if chosen not in _logged_backend:
            _logged_backend.add(chosen)
            reason = "CUDA and flash-attn present" if chosen == "flash_attention_2" else \
                "flash-attn unavailable (no CUDA or package missing); falling back to SDPA"
            log.info("attention backend", extra={"fields": {"backend": chosen, "reason": reason}})
        return chosen
    return requested


def _model_dir(uri: str, what: str) -> Path:
    path = localize(uri, what=what)
    if not (path / "config.json").exists() and not (path / "adapter_config.json").exists():
        raise InputError(f"{what} at {uri} has no config.json or adapter_config.json; not a saved model")
    return path


def load_tokenizer(uri: str, *, require_chat_template: bool = False):
    """Load a tokenizer; with ``require_chat_template`` fail early if it cannot format chats."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(str(localize(uri, what="tokenizer")))
    if require_chat_template and not tok.chat_template:
        raise InputError(f"tokenizer at {uri} has no chat template; SFT/DPO/serving need one")
    if tok.pad_token is None:
        tok.pad_token = tok.eos_token
    return tok


def load_model(uri: str, *, adapter_uri: str | None = None, attn_implementation: str = "auto",
               dtype=None, trainable_adapter: bool = False):
    """Load a causal LM from ``uri``, optionally with a LoRA adapter from ``adapter_uri``.

    ``uri`` may itself be an adapter directory (``adapter_config.json``), in which case its
    recorded base model is loaded first.
    """
    import torch
    from transformers import AutoModelForCausalLM

    path = _model_dir(uri, "model")
    if (path / "adapter_config.json").exists() and not (path / "config.json").exists():
        import json

        base = json.loads((path / "adapter_config.json").read_text())["base_model_name_or_path"]
        return load_model(base, adapter_uri=str(path), attn_implementation=attn_implementation,
                          dtype=dtype, trainable_adapter=trainable_adapter)
    model = AutoModelForCausalLM.from_pretrained(
        str(path), attn_implementation=resolve_attn_implementation(attn_implementation),
        dtype=dtype or torch.float32)
    if adapter_uri:
        from peft import PeftModel

        adapter_path = _model_dir(adapter_uri, "adapter")
        model = PeftModel.from_pretrained(model, str(adapter_path), is_trainable=trainable_adapter)
    return model
