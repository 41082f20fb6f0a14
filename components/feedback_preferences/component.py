"""Turn the round's feedback labels into DPO preference pairs and write the round's data card."""

from kfp.dsl import Dataset, Input, Markdown, Metrics, Output

from components._image import medgo_component


@medgo_component
def feedback_preferences(
    labels: Input[Dataset],
    preferences: Output[Dataset],
    data_card: Output[Markdown],
    metrics: Output[Metrics],
    max_pairs_per_prompt: int = 4,
    min_pairs: int = 1,
) -> bool:
    """``preferences``: chosen/rejected pairs; ``data_card``: entries, pairs, conflicts, scrubbed identifiers.

    Returns whether there are at least ``min_pairs`` pairs (a single ``bool`` so ``dsl.If`` resolves locally).
    """
    import shutil
    import tempfile
    from pathlib import Path

    from medgo.components_io import log_metrics
    from medgo.config import PrefsConfig, load_config
    from medgo.feedback.round import build_round_data

    config = load_config(PrefsConfig, max_pairs_per_prompt=max_pairs_per_prompt)
    card_dir = Path(tempfile.mkdtemp(prefix="medgo-card-"))
    card = build_round_data(labels.path, preferences.path, card_dir, config)
    Path(data_card.path).parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(card_dir / "data_card.md", data_card.path)
    log_metrics(metrics, card, prefix="round")
    return card["pairs"] >= min_pairs
