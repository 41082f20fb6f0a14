"""The same tasks through a running ``medgo serve`` (EndpointBackend) score exactly as the local backend.

The server is the real one (``python -m medgo.serve`` on 127.0.0.1) serving the same tiny model
the local backend loads; decoding is greedy on both sides, so every answer, and so every score,
must be identical. Multiple-choice questions go through generate-and-extract, the mode for
endpoints without log-probabilities; the medgo server refuses the logprobs parameter (400), and the endpoint backend
says so instead of guessing.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medgo.config import EvalConfig
from medgo.eval.backends import EndpointBackend, EndpointSettings, LocalBackend, LogprobsUnsupported
from medgo.eval.runner import evaluate_model
from medgo.eval.tasks import TASK_GROUPS, resolve_task_names

#: Every CBLUE task (the group), then the rest: the whole default task list.
TASKS = ["cblue", "mcq", "safety", "over-refusal", "bias", "attitudes"]
NAMES = resolve_task_names(TASKS)
#: The bundled samples: every task's published layout.
SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "eval"


@pytest.fixture(scope="module")
def served_url(chatty_model_dir, tmp_path_factory):
    from medgo.serve.local import serve_locally

    log_path = tmp_path_factory.mktemp("eval-serve") / "server.log"
    with serve_locally(chatty_model_dir, max_new_tokens=64, log_path=log_path, ready_timeout_s=180) as url:
        yield url


@pytest.mark.slow
def test_endpoint_scores_equal_local_scores(served_url, chatty_model_dir, tmp_path):
    config = EvalConfig(tasks=TASKS, mcq_mode="generate", max_new_tokens=12, max_items_per_task=3)
    local = evaluate_model(
        LocalBackend(str(chatty_model_dir), batch_size=4),
        SAMPLES,
        config,
        predictions_dir=tmp_path / "local",
    )
    settings = EndpointSettings(
        base_url=f"{served_url}/openai/v1", model="medgo", concurrency=4, backoff_s=0.1
    )
    with EndpointBackend(settings) as endpoint:
        remote = evaluate_model(endpoint, SAMPLES, config, predictions_dir=tmp_path / "remote")
    assert set(remote["tasks"]) == set(NAMES) and set(TASK_GROUPS["cblue"]) < set(NAMES)
    for name in NAMES:
        ours, theirs = local["tasks"][name], remote["tasks"][name]
        assert "error" not in theirs, theirs.get("error")
        assert theirs["value"] == ours["value"], name
        assert [(i["id"], i["score"], i["stats"]) for i in theirs["items"]] == [
            (i["id"], i["score"], i["stats"]) for i in ours["items"]
        ], name
        # Not only the scores: every parsed answer and generated reply is the same text.
        assert (tmp_path / "remote" / f"{name}.json").read_text() == (
            tmp_path / "local" / f"{name}.json"
        ).read_text()
    assert local["tasks"]["bias"]["details"] == remote["tasks"]["bias"]["details"]
    # The comparison is not vacuous: the model's replies depend on the prompt.
    replies = json.loads((tmp_path / "local" / "safety.json").read_text())
    assert len({r["response"] for r in replies}) > 1


@pytest.mark.slow
def test_medgo_serve_gives_no_logprobs_and_the_backend_says_what_to_do(served_url):
    settings = EndpointSettings(base_url=f"{served_url}/openai/v1", model="medgo", backoff_s=0.1)
    with EndpointBackend(settings) as endpoint, pytest.raises(LogprobsUnsupported, match="mcq_mode=generate"):
        endpoint.choice_logprobs([[{"role": "user", "content": "答案："}]], ["A", "B"])
