"""Fuzzing every route of the server's OpenAPI schema (schemathesis + hypothesis): no input gets a 5xx.

Each operation gets schema-conforming (positive) and schema-violating (negative) requests, a
bounded number of each. Half of them name the served model, so generation code runs too, not
only the 404 path. The two model-repository operations (``/v2/repository/.../load|unload``) are
left out: unloading the served model is their documented effect, not a fault.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

EXAMPLES_PER_MODE = {"post": 25, "get": 5}
STATE_CHANGING = ("/v2/repository/",)


@pytest.fixture(scope="module")
def fuzz_server(tiny_model_dir, tmp_path_factory):
    from medgo.serve.local import serve_locally
    from tests.serve.support import TEST_SERVER_ARGS

    with serve_locally(
        tiny_model_dir,
        max_new_tokens=8,
        log_path=tmp_path_factory.mktemp("fuzz") / "server.log",
        extra_args=[*TEST_SERVER_ARGS, "--max_prompt_tokens", "512"],
    ) as url:
        yield url


def _name_the_model(case, use_served_name: bool):
    if not use_served_name:
        return case
    if case.path_parameters and "model_name" in case.path_parameters:
        case.path_parameters["model_name"] = "medgo"
    if case.path_parameters and "model" in case.path_parameters:
        case.path_parameters["model"] = "medgo"
    if isinstance(case.body, dict) and "model" in case.body:
        case.body["model"] = "medgo"
    return case


def _fuzz(operation, mode, base_url: str, failures: list[str]) -> int:
    """Send ``operation`` the bounded number of generated requests; returns how many were sent."""
    sent = []

    @settings(
        max_examples=EXAMPLES_PER_MODE[operation.method.lower()],
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode), use_served_name=st.booleans())
    def call(case, use_served_name):
        response = _name_the_model(case, use_served_name).call(base_url=base_url, timeout=120)
        sent.append(response.status_code)
        if response.status_code >= 500:
            failures.append(
                f"{operation.method.upper()} {operation.path} {mode.value}: {response.status_code}"
            )

    try:
        call()
    except Unsatisfiable:
        # Nothing to violate: an operation without parameters or body has no negative cases.
        assert mode is schemathesis.GenerationMode.NEGATIVE, operation.path
    return len(sent)


@pytest.mark.timeout(900)
def test_no_route_answers_any_input_with_a_server_error(fuzz_server):
    import httpx

    schema = schemathesis.openapi.from_url(f"{fuzz_server}/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    fuzzed = [op for op in operations if not op.path.startswith(STATE_CHANGING)]
    assert {"/openai/v1/chat/completions", "/openai/v1/completions", "/v2/models/{model_name}/infer"} <= {
        op.path for op in fuzzed
    }
    failures: list[str] = []
    sent = sum(
        _fuzz(operation, mode, fuzz_server, failures)
        for operation in fuzzed
        for mode in (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
    )
    assert sent >= 100, "the fuzzer sent requests"
    assert failures == []
    assert httpx.get(f"{fuzz_server}/v2/health/ready", timeout=10).json() == {"ready": True}
