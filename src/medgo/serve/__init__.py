"""Serving: the medgo chat model on KServe's model server.

* :mod:`medgo.serve.model` -- :class:`~medgo.serve.model.MedgoModel`, a ``kserve.Model``: KServe v1/v2
  inference, request limits and the async generation API the routes share.
* :mod:`medgo.serve.batching` -- the continuous-batching engine (one thread, KV cache, per-row
  sampling, bounded queue, cancellation between decoding steps).
* :mod:`medgo.serve.streaming` -- token ids to clean text, incrementally (no half characters, no
  control bytes, stop strings held back).
* :mod:`medgo.serve.openai_api` -- OpenAI-compatible chat/text completions (streaming too) and models.
* :mod:`medgo.serve.middleware` -- request ids, body-size limit, disconnect watch, request metrics.
* :mod:`medgo.serve.metrics` -- the Prometheus metrics on KServe's ``/metrics``.
* :mod:`medgo.serve.response_log` -- answered prompts kept by request id (for feedback).
* :mod:`medgo.serve.server` -- ``python -m medgo.serve``: KServe's ``ModelServer`` with all of it,
  and the seam for plugged-in routers.
* :mod:`medgo.serve.local` -- run that server as a local subprocess and ask it questions (pipeline, demo).

Submodules are imported on use: :mod:`medgo.serve.local` and :mod:`medgo.serve.streaming` need
neither torch nor KServe.
"""
