"""Clients of the ``medgo-feedback`` service, the single writer of the store when serving scales out.

* :class:`RemoteResponseLog` -- a model-server replica's response log: every served answer is
  recorded in the service (``PUT /internal/v1/responses/{id}``, token role ``record``), so feedback
  sent to any replica finds it.
* :func:`export_remote` -- the pipeline's export step asks the service to export
  (``POST /internal/v1/exports``, role ``export``); the service owns the database, so only it
  may claim and commit entries.

Both raise ``httpx.HTTPError`` subclasses when the service cannot be reached; the model server logs
a failed ``record`` and still answers the chat (see :mod:`medgo.serve.openai_api`).
"""

from __future__ import annotations

from typing import Any

import httpx

from medgo.chat import Messages
from medgo.config import FeedbackExportConfig
from medgo.errors import MedgoError
from medgo.feedback.store import StoredResponse

RESPONSES_PATH = "/internal/v1/responses"
EXPORTS_PATH = "/internal/v1/exports"


def _headers(token: str | None) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"} if token else {}


class RemoteResponseLog:
    """A response log kept by the feedback service; blocking calls (the server runs them off its event loop)."""

    def __init__(self, base_url: str, *, token: str | None, timeout_s: float) -> None:
        self.base_url = base_url.rstrip("/")
        self._client = httpx.Client(timeout=timeout_s, headers=_headers(token))

    def record(self, request_id: str, model: str, messages: Messages, answer: str, created: int) -> None:
        response = self._client.put(
            f"{self.base_url}{RESPONSES_PATH}/{request_id}",
            json={"model": model, "messages": list(messages), "answer": answer, "created": int(created)},
        )
        response.raise_for_status()

    def get(self, request_id: str) -> StoredResponse | None:
        response = self._client.get(f"{self.base_url}{RESPONSES_PATH}/{request_id}")
        if response.status_code == 404:
            return None
        response.raise_for_status()
        data = response.json()
        return StoredResponse(request_id, data["model"], data["messages"], data["answer"], data["created"])

    def close(self) -> None:
        self._client.close()


def export_remote(
    base_url: str, config: FeedbackExportConfig, *, token: str | None, timeout_s: float = 600.0
) -> dict[str, Any]:
    """Have the feedback service export its pending entries to ``config.target_uri``; returns its summary."""
    url = f"{base_url.rstrip('/')}{EXPORTS_PATH}"
    try:
        response = httpx.post(url, json=config.model_dump(), headers=_headers(token), timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise MedgoError(f"feedback service at {base_url} cannot be reached: {exc}") from None
    if response.status_code != 200:
        try:
            detail = response.json()["error"]["message"]
        except (ValueError, KeyError, TypeError):
            detail = response.text[:200]
        raise MedgoError(f"feedback service refused the export: HTTP {response.status_code}: {detail}")
    return response.json()
