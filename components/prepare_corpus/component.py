"""Clean, normalise, exact-dedup and privacy-scrub raw corpus shards."""

from kfp.dsl import Dataset, Metrics, Output

from components._image import medgo_component


@medgo_component
def prepare_corpus(
    corpus_uri: str,
    clean: Output[Dataset],
    metrics: Output[Metrics],
    min_chars: int = 20,
    min_chinese_ratio: float = 0.3,
    scrub_pii: bool = True,
):
    """Raw JSONL corpus (path or s3://) → clean shards, quarantine, data card, manifest."""
    from medgo.components_io import log_metrics
    from medgo.config import PrepareConfig, load_config
    from medgo.data.prepare import prepare_corpus as run

    config = load_config(
        PrepareConfig, min_chars=min_chars, min_chinese_ratio=min_chinese_ratio, scrub_pii=scrub_pii
    )
    log_metrics(metrics, run(corpus_uri, clean.path, config), prefix="prepare")
