"""Turn doctors' acceptable/unacceptable labels (or exported feedback) into DPO preference pairs."""

from kfp.dsl import Dataset, Metrics, Output

from components._image import medgo_component


@medgo_component
def build_preferences(
    labels_uri: str,
    preferences: Output[Dataset],
    metrics: Output[Metrics],
    max_pairs_per_prompt: int = 4,
):
    """Doctor labels (path or s3://) → ``train.jsonl`` of chosen/rejected pairs."""
    from medgo.components_io import log_metrics
    from medgo.config import PrefsConfig, load_config
    from medgo.data.prefs import build_preferences as run

    config = load_config(PrefsConfig, max_pairs_per_prompt=max_pairs_per_prompt)
    log_metrics(metrics, run(labels_uri, preferences.path, config), prefix="prefs")
