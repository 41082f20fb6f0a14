"""Model and tokenizer loading (path, PVC or s3://) and the tiny offline model factory."""

from medgo.modeling.loading import (
    ADAPTER_CONFIG,
    TOKENIZER_FILES,
    adapter_base_model,
    inference_placement,
    input_device,
    is_adapter_dir,
    load_for_inference,
    load_model,
    load_tokenizer,
    resolve_attn_implementation,
    resolve_model_dirs,
    stop_token_ids,
    tokenizer_source,
)

__all__ = [
    "ADAPTER_CONFIG",
    "TOKENIZER_FILES",
    "adapter_base_model",
    "inference_placement",
    "input_device",
    "is_adapter_dir",
    "load_for_inference",
    "load_model",
    "load_tokenizer",
    "resolve_attn_implementation",
    "resolve_model_dirs",
    "stop_token_ids",
    "tokenizer_source",
]
