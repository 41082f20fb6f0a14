"""Prepare a raw corpus in one task (the whole stage on the task's own process pool).

The pipeline fans the same stage out over shard groups instead (``steps.py``); this component is for
corpora one pod can carry and for callers that want a single step.
"""

from kfp.dsl import HTML, Dataset, Metrics, Output

from components._image import medgo_component


@medgo_component
def prepare_corpus(
    corpus_uri: str,
    clean: Output[Dataset],
    metrics: Output[Metrics],
    card: Output[HTML],
    min_chars: int = 20,
    min_chinese_ratio: float = 0.3,
    scrub_pii: bool = True,
    eval_data_uri: str = "",
    max_quarantine_share: float = 0.01,
    allow_partial: bool = False,
):
    """Raw corpus (path or s3://) → clean shards, quarantine, data card (JSON, HTML, metrics), manifest."""
    import tempfile

    from medgo.components_io import decontamination_settings, log_metrics
    from medgo.config import PrepareConfig, load_config
    from medgo.data.card import publish_card
    from medgo.data.prepare import prepare_corpus as run

    config = load_config(
        PrepareConfig,
        min_chars=min_chars,
        min_chinese_ratio=min_chinese_ratio,
        scrub_pii=scrub_pii,
        decontamination=decontamination_settings(eval_data_uri),
        max_quarantine_share=max_quarantine_share,
        allow_partial=allow_partial,
    )
    with tempfile.TemporaryDirectory(prefix="medgo-work-") as work:
        try:
            counts = run(corpus_uri, clean.path, config, work_dir=work)
        finally:
            publish_card(clean.path, card.path, metrics)
    log_metrics(metrics, counts, prefix="prepare")
