"""Tokenise clean documents with the base model's tokenizer and pack fixed-length sequences."""

from kfp.dsl import Dataset, Input, Metrics, Output

from components._image import medgo_component


@medgo_component
def pack_corpus(
    clean: Input[Dataset],
    tokenizer_uri: str,
    packed: Output[Dataset],
    metrics: Output[Metrics],
    seq_len: int = 4096,
):
    """Clean shards → ``tokens-*.parquet`` with per-document position ids."""
    from medgo.components_io import log_metrics
    from medgo.config import PackConfig, load_config
    from medgo.data.pack import pack_corpus as run

    config = load_config(PackConfig, seq_len=seq_len)
    log_metrics(metrics, run(clean.path, tokenizer_uri, packed.path, config), prefix="pack")
