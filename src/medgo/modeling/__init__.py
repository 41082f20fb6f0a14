"""Model and tokenizer loading (path, PVC or s3://) and the tiny offline model factory."""

from medgo.modeling.loading import load_model, load_tokenizer, resolve_attn_implementation

__all__ = ["load_model", "load_tokenizer", "resolve_attn_implementation"]
