"""Build chat-format SFT records from consultations, drug labels, guideline QA, diagnoses, safety."""

from kfp.dsl import Dataset, Metrics, Output

from components._image import medgo_component


@medgo_component
def build_sft(
    sources_uri: str,
    sft_data: Output[Dataset],
    metrics: Output[Metrics],
    only_approved_guidelines: bool = True,
):
    """SFT source files (path or s3://) → ``train.jsonl`` in TRL's conversational format."""
    from medgo.components_io import log_metrics
    from medgo.config import SftBuildConfig, load_config
    from medgo.data.sft import build_sft as run
    from medgo.storage import localize

    config = load_config(SftBuildConfig, only_approved_guidelines=only_approved_guidelines)
    log_metrics(metrics, run(localize(sources_uri, what="SFT sources"), sft_data.path, config), prefix="sft")
