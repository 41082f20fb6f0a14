"""Small helpers shared by the KFP components (kept here so component bodies stay a few lines)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from numbers import Number


def artifact_location(artifact, remote: bool) -> str:
    """Where another process should read/write a KFP artifact.

    In the component's own pod (or under kfp.local) that is the mounted ``.path``; a separate
    workload such as a PyTorchJob reaches the object store directly through ``.uri``.
    """
    return artifact.uri if remote else artifact.path


def decontamination_settings(
    eval_data_uri: str, enabled: bool = True, ngram_chars: int | None = None
) -> dict:
    """A data step's ``decontamination`` settings: off when disabled or given no evaluation sets."""
    settings: dict = {"eval_dir": eval_data_uri if enabled and eval_data_uri else None}
    if ngram_chars is not None:
        settings["ngram_chars"] = ngram_chars
    return settings


def flatten_numbers(values: Mapping, prefix: str = "") -> dict[str, float]:
    """Nested counts → ``{"a/b": 1.0}``; non-numeric leaves are skipped (KFP Metrics are floats)."""
    flat: dict[str, float] = {}
    for key, value in values.items():
        name = f"{prefix}/{key}" if prefix else str(key)
        if isinstance(value, Mapping):
            flat.update(flatten_numbers(value, name))
        elif isinstance(value, Number) and not isinstance(value, bool):
            flat[name] = float(value)
    return flat


def log_metrics(metrics, values: Mapping, prefix: str = "") -> dict[str, float]:
    """Log every numeric entry of ``values`` to a KFP ``Metrics`` artifact."""
    flat = flatten_numbers(values, prefix)
    for name, value in flat.items():
        metrics.log_metric(name, value)
    return flat


def run_name(prefix: str, run_id: str = "") -> str:
    """A DNS-1123 name for a Kubernetes object owned by this pipeline task, stable across retries."""
    suffix = re.sub(r"[^a-z0-9]", "", run_id.lower())[:12]
    name = f"{prefix}-{suffix}" if suffix else prefix
    return re.sub(r"[^a-z0-9-]", "-", name.lower()).strip("-")[:63]
