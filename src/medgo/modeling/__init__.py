"""Model and tokenizer loading (path, PVC or s3://) and the tiny offline model factory."""

from medgo.modeling.loading import (
    TOKENIZER_FILES,
    adapter_base_model,
    inference_placement,
    input_device,
    load_for_inference,
    load_model,
    load_tokenizer,
    resolve_attn_implementation,
    stop_token_ids,
    tokenizer_source,
)

__all__ = [
    "TOKENIZER_FILES",
    "adapter_base_model",
    "inference_placement",
    "input_device",
    "load_for_inference",
    "load_model",
    "load_tokenizer",
    "resolve_attn_implementation",
    "stop_token_ids",
    "tokenizer_source",
]
