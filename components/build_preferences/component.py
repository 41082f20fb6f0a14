"""Turn doctors' acceptable/unacceptable labels (or exported feedback) into DPO preference pairs."""

from kfp.dsl import HTML, Dataset, Metrics, Output

from components._image import medgo_component


@medgo_component
def build_preferences(
    labels_uri: str,
    preferences: Output[Dataset],
    metrics: Output[Metrics],
    card: Output[HTML],
    max_pairs_per_prompt: int = 4,
    eval_data_uri: str = "",
    decontaminate: bool = True,
    decontam_ngram_chars: int = 13,
    max_quarantine_share: float = 0.01,
    allow_partial: bool = False,
):
    """Doctor labels (path or s3://) → ``train.jsonl`` of chosen/rejected pairs, decontaminated."""
    from medgo.components_io import decontamination_settings, log_metrics
    from medgo.config import PrefsConfig, load_config
    from medgo.data.card import publish_card
    from medgo.data.prefs import build_preferences as run

    config = load_config(
        PrefsConfig,
        max_pairs_per_prompt=max_pairs_per_prompt,
        decontamination=decontamination_settings(eval_data_uri, decontaminate, decontam_ngram_chars),
        max_quarantine_share=max_quarantine_share,
        allow_partial=allow_partial,
    )
    try:
        counts = run(labels_uri, preferences.path, config)
    finally:
        publish_card(preferences.path, card.path, metrics)
    log_metrics(metrics, counts, prefix="prefs")
