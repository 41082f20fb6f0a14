"""Structured logging: ``log.info("msg", extra=fields(key=value))`` renders as ``msg key=value`` (JSON in a pod)."""

from __future__ import annotations

import json
import logging
import os
import sys


class _KeyValueFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        base = super().format(record)
        fields = getattr(record, "fields", None)
        if not fields:
            return base
        rendered = " ".join(
            f"{k}={json.dumps(v, ensure_ascii=False) if isinstance(v, str) and ' ' in v else v}"
            for k, v in fields.items()
        )
        return f"{base} {rendered}"


class _JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        payload = {
            "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        payload.update(getattr(record, "fields", None) or {})
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False, default=str)


def setup_logging(level: str | None = None, *, json_logs: bool | None = None) -> None:
    """Configure the root logger once; ``MEDGO_LOG_LEVEL``/``MEDGO_LOG_JSON`` override defaults.

    JSON logs are the default inside Kubernetes (``KUBERNETES_SERVICE_HOST`` set) so log
    shippers can index the fields; key=value text elsewhere.
    """
    level = (level or os.environ.get("MEDGO_LOG_LEVEL", "INFO")).upper()
    if json_logs is None:
        env = os.environ.get("MEDGO_LOG_JSON")
        json_logs = env == "1" if env is not None else "KUBERNETES_SERVICE_HOST" in os.environ
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        _JsonFormatter()
        if json_logs
        else _KeyValueFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in ("urllib3", "botocore", "boto3", "s3transfer", "filelock", "httpx", "DeepSpeed"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


def fields(**kw) -> dict:
    """Shorthand for ``extra={"fields": kw}``."""
    return {"fields": kw}
