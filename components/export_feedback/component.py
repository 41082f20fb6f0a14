"""Export the doctor feedback not yet exported, then gather every export so far as the round's labels."""

from kfp.dsl import Dataset, Metrics, Output

from components._image import medgo_component


@medgo_component
def export_feedback(
    export_uri: str,
    labels: Output[Dataset],
    metrics: Output[Metrics],
    service_url: str = "",
    db_path: str = "",
):
    """Through the medgo-feedback service (``service_url``, token from the Secret) or a store file
    (``db_path``, local runs) → scrubbed label files under ``export_uri``; ``labels`` holds all of them."""
    from medgo.components_io import log_metrics
    from medgo.config import FeedbackExportConfig, load_config
    from medgo.feedback.round import export_new_feedback, gather_exports

    config = load_config(FeedbackExportConfig, target_uri=export_uri)
    exported = export_new_feedback(config, service_url=service_url, db_path=db_path)
    log_metrics(metrics, {"new_entries": exported["entries"]}, prefix="export")
    log_metrics(metrics, gather_exports(export_uri, labels.path), prefix="feedback")
