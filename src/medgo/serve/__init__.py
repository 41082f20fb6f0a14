"""Serving: the medgo chat model on KServe's model server.

* :mod:`medgo.serve.model` -- :class:`~medgo.serve.model.MedgoModel`, a ``kserve.Model``: KServe v1/v2
  inference and the generation core (validated settings, one generation at a time).
* :mod:`medgo.serve.openai_api` -- OpenAI-compatible ``/openai/v1/chat/completions`` and ``/openai/v1/models``.
* :mod:`medgo.serve.server` -- ``python -m medgo.serve``: KServe's ``ModelServer`` with both.
* :mod:`medgo.serve.local` -- run that server as a local subprocess and ask it questions (pipeline, demo).

Submodules are imported on use: :mod:`medgo.serve.local` needs neither torch nor KServe.
"""
