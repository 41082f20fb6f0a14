"""Prometheus metrics of the model server, on the registry KServe's ``/metrics`` exposes.

KServe serves ``prometheus_client.REGISTRY`` at ``/metrics`` (the ServingRuntime's
``prometheus.kserve.io`` annotations point scrapers there), so the metrics are registered there
once per process. Labels are bounded: the route template (never the raw path), the status code,
the model name and a finish reason from a fixed set.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

#: Seconds, for whole requests and time to first token of a chat model on CPU or GPU.
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0)

REQUESTS = Counter(
    "medgo_http_requests",
    "HTTP requests answered, by route template, method and status code",
    ["route", "method", "status"],
)
REQUEST_SECONDS = Histogram(
    "medgo_http_request_duration_seconds",
    "Time from the request's arrival to the end of its response, by route template",
    ["route", "method"],
    buckets=LATENCY_BUCKETS,
)
PROMPT_TOKENS = Counter("medgo_prompt_tokens", "Prompt tokens of answered generations", ["model"])
COMPLETION_TOKENS = Counter(
    "medgo_completion_tokens",
    "Tokens generated, including those of generations that were cancelled or timed out",
    ["model"],
)
GENERATIONS = Counter(
    "medgo_generations",
    "Generations ended, by reason: stop, length (max_tokens), cancelled (client gone), timeout, "
    "rejected (queue full), error, shutdown",
    ["model", "reason"],
)
QUEUE_DEPTH = Gauge("medgo_queue_depth", "Prompts waiting for a place in the running batch", ["model"])
RUNNING = Gauge("medgo_running_generations", "Prompts in the running batch", ["model"])
BATCH_SIZE = Histogram(
    "medgo_batch_size",
    "Prompts decoded together, one observation per forward pass",
    ["model"],
    buckets=(1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 128),
)
TIME_TO_FIRST_TOKEN = Histogram(
    "medgo_time_to_first_token_seconds",
    "Time from admission to the first generated token",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
GENERATION_SECONDS = Histogram(
    "medgo_generation_duration_seconds",
    "Time from admission to the end of a generation (queueing included)",
    ["model"],
    buckets=LATENCY_BUCKETS,
)
