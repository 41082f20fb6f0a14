"""Helpers the serving tests share (plain functions and constants; fixtures live in conftest.py)."""

from __future__ import annotations

#: Every test server runs decoding on one torch thread: the machine is small and shared.
TEST_SERVER_ARGS = ["--torch_threads", "1"]


def scrape(base_url: str) -> dict[tuple[str, tuple], float]:
    """The server's Prometheus samples: ``(name, sorted label items) → value``."""
    import httpx
    from prometheus_client.parser import text_string_to_metric_families

    samples = {}
    for family in text_string_to_metric_families(httpx.get(f"{base_url}/metrics", timeout=10).text):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def metric(samples: dict, name: str, **labels: str) -> float:
    """The sum of ``name`` over the samples whose labels include ``labels`` (0 when absent)."""
    return sum(
        value
        for (sample_name, items), value in samples.items()
        if sample_name == name and all(dict(items).get(k) == v for k, v in labels.items())
    )
