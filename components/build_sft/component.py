"""Build chat-format SFT records from consultations, drug labels, guideline QA, diagnoses, safety."""

from kfp.dsl import HTML, Dataset, Metrics, Output

from components._image import medgo_component


@medgo_component
def build_sft(
    sources_uri: str,
    sft_data: Output[Dataset],
    metrics: Output[Metrics],
    card: Output[HTML],
    only_approved_guidelines: bool = True,
    eval_data_uri: str = "",
    decontaminate: bool = True,
    decontam_ngram_chars: int = 13,
    max_quarantine_share: float = 0.01,
    allow_partial: bool = False,
):
    """SFT source files (path or s3://) → ``train.jsonl`` in TRL's conversational format, decontaminated."""
    from medgo.components_io import decontamination_settings, log_metrics
    from medgo.config import SftBuildConfig, load_config
    from medgo.data.card import publish_card
    from medgo.data.sft import build_sft as run
    from medgo.storage import localize

    config = load_config(
        SftBuildConfig,
        only_approved_guidelines=only_approved_guidelines,
        decontamination=decontamination_settings(eval_data_uri, decontaminate, decontam_ngram_chars),
        max_quarantine_share=max_quarantine_share,
        allow_partial=allow_partial,
    )
    try:
        counts = run(localize(sources_uri, what="SFT sources"), sft_data.path, config)
    finally:
        publish_card(sft_data.path, card.path, metrics)
    log_metrics(metrics, counts, prefix="sft")
