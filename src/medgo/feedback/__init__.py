"""Doctor feedback: a durable store of ratings on served answers, its export, and the next round's data.

* :mod:`medgo.feedback.store` -- :class:`~medgo.feedback.store.FeedbackStore`: SQLite (WAL,
  ``synchronous=FULL``) holding served answers by request id for a retention period and the
  feedback entries on them, each with the prompt and answer it rates; idempotent by feedback id.
* :mod:`medgo.feedback.tokens` -- bearer tokens by role (read, write, record, export) from a mounted Secret.
* :mod:`medgo.feedback.export` -- entries not yet exported → scrubbed label JSONL on a PVC or S3, exactly once.
* :mod:`medgo.feedback.client` -- what a model-server replica uses when the store lives in the
  ``medgo-feedback`` service (the single writer) instead of in its own process.
* :mod:`medgo.feedback.round` -- exported labels → preference pairs and the round's data card.

The HTTP routes live in :mod:`medgo.serve.feedback_api` (on the model server) and
:mod:`medgo.serve.feedback_service` (the one-writer service).
"""
