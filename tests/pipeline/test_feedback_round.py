"""The feedback-round pipeline: its committed YAML, its shape, and its schedule as a KFP recurring run.

The recurring-run checks send the real requests: the official ``kfp.Client`` (through
:func:`medgo.recurring.recurring_run_arguments`) and the ``kfp recurring-run create`` command documented in
``pipelines/feedback_round.py``, run as written, talk to a small HTTP server on 127.0.0.1 that answers the
few KFP API calls they make (health, experiments, recurring runs) and records the bodies. No KFP server can
run here; the recorded bodies are decoded with KFP's own API models (``kfp_server_api``) and checked
against the compiled pipeline.
"""

from __future__ import annotations

import http.server
import json
import shlex
import subprocess
import sys
import threading
from pathlib import Path

import kfp_server_api
import pytest
import yaml

from medgo.errors import ConfigError
from medgo.recurring import NIGHTLY, pipeline_parameters, recurring_run_arguments, validate_cron
from pipelines import feedback_round as module
from pipelines.feedback_round import COMPILED_PATH, compile_pipeline

PYPROJECT = Path(__file__).resolve().parents[2] / "pyproject.toml"


def test_committed_yaml_matches_a_fresh_compile(tmp_path):
    fresh = compile_pipeline(tmp_path / "feedback_round.yaml").read_text()
    assert COMPILED_PATH.read_text() == fresh, (
        "pipelines/feedback_round.yaml is stale: run `medgo pipeline compile --name feedback-round` and commit it"
    )


def test_it_is_registered_as_a_medgo_pipeline():
    import tomllib

    entry = tomllib.loads(PYPROJECT.read_text())["project"]["entry-points"]["medgo.pipelines"][
        "feedback-round"
    ]
    module_name, attr = entry.split(":")
    assert module_name == module.__name__ and getattr(module, attr) is module.feedback_round


def _docs():
    return list(yaml.safe_load_all(COMPILED_PATH.read_text()))


def test_parameters_are_stage_prefixed_and_documented():
    params = _docs()[0]["root"]["inputDefinitions"]["parameters"]
    for name, definition in params.items():
        assert name in {"production_model_uri", "eval_data_uri"} or name.split("_")[0] in {
            "feedback",
            "data",
            "train",
            "eval",
            "deploy",
        }, name
        assert definition.get("description"), f"parameter {name} has no description"


def test_dpo_starts_from_production_and_deploys_only_behind_both_conditions():
    root = _docs()[0]["root"]["dag"]["tasks"]
    assert {"export-feedback", "feedback-preferences", "importer", "condition-1"} <= set(root)
    assert root["feedback-preferences"]["inputs"]["artifacts"]["labels"]["taskOutputArtifact"][
        "producerTask"
    ] == ("export-feedback")
    enough = _docs()[0]["components"]["comp-condition-1"]["dag"]["tasks"]
    assert enough["train"]["inputs"]["parameters"]["stage"]["runtimeValue"]["constant"] == "dpo"
    model = enough["train"]["inputs"]["artifacts"]["model"]["componentInputArtifact"]
    channel = root["condition-1"]["inputs"]["artifacts"][model]["taskOutputArtifact"]
    assert channel["producerTask"] == "importer"  # the production adapter
    baseline = enough["evaluate"]["inputs"]["parameters"]["baseline_model_uri"]
    assert baseline["componentInputParameter"] == "pipelinechannel--production_model_uri"
    assert "deploy" not in enough and "condition-2" in enough
    gate = _docs()[0]["components"]["comp-condition-2"]["dag"]["tasks"]
    assert "deploy" in gate and "condition-3" in gate  # the rolled-back check after the deploy step


def test_the_export_step_gets_only_the_export_token():
    platform = _docs()[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]["exec-export-feedback"]
    tokens = [s for s in platform["secretAsEnv"] if s["secretName"] == "medgo-feedback-tokens"]
    assert tokens == [
        {**tokens[0], "keyToEnv": [{"secretKey": "export", "envVar": "MEDGO_FEEDBACK_EXPORT_TOKEN"}]}
    ]


# -- the recurring run ---------------------------------------------------------------------------------------
class _KfpApi(http.server.BaseHTTPRequestHandler):
    """The KFP v2beta1 calls a client makes to create a recurring run; bodies are recorded."""

    recorded: list[tuple[str, str, dict | None]] = []

    def _answer(self, body: dict, status: int = 200) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.recorded.append(("GET", self.path, None))
        if self.path.startswith("/apis/v2beta1/healthz"):
            return self._answer({"commit_sha": "test", "tag_name": "2.5.0", "multi_user": False})
        if self.path.startswith("/apis/v2beta1/experiments"):
            return self._answer({})  # no such experiment yet
        return self._answer({"error": "not found"}, 404)

    def do_POST(self):  # noqa: N802
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        self.recorded.append(("POST", self.path, body))
        if self.path == "/apis/v2beta1/experiments":
            return self._answer({**body, "experiment_id": "exp-medgo", "created_at": "2026-12-01T00:00:00Z"})
        if self.path == "/apis/v2beta1/recurringruns":
            created = {"recurring_run_id": "rr-1", "status": "ENABLED", "created_at": "2026-12-01T00:00:00Z"}
            return self._answer({**body, **created})
        return self._answer({"error": "not found"}, 404)

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def kfp_api():
    handler = type("Api", (_KfpApi,), {"recorded": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", handler.recorded
    server.shutdown()
    server.server_close()


class _Response:
    def __init__(self, body: dict) -> None:
        self.data = json.dumps(body)


def recorded_recurring_run(recorded) -> kfp_server_api.V2beta1RecurringRun:
    [body] = [b for method, path, b in recorded if (method, path) == ("POST", "/apis/v2beta1/recurringruns")]
    return kfp_server_api.ApiClient().deserialize(_Response(body), "V2beta1RecurringRun")


def without_caching(spec):
    if isinstance(spec, dict):
        return {k: without_caching(v) for k, v in spec.items() if k != "cachingOptions"}
    if isinstance(spec, list):
        return [without_caching(v) for v in spec]
    return spec


def check_recurring_run(run: kfp_server_api.V2beta1RecurringRun, expected_params: dict) -> None:
    assert run.experiment_id == "exp-medgo" and run.mode == "ENABLE"
    assert int(run.max_concurrency) == 1 and run.no_catchup is True
    assert validate_cron(run.trigger.cron_schedule.cron) == NIGHTLY
    compiled = _docs()
    # Exactly the committed pipeline; the SDK path also turns caching off for every task.
    assert without_caching(run.pipeline_spec["pipeline_spec"]) == without_caching(compiled[0])
    assert run.pipeline_spec["platform_spec"] == compiled[1]
    known = pipeline_parameters(COMPILED_PATH)
    sent = run.runtime_config.parameters
    assert set(sent) <= set(known) and sent == expected_params


def test_recurring_run_from_the_sdk_is_a_valid_kfp_recurring_run(kfp_api):
    import kfp

    url, recorded = kfp_api
    client = kfp.Client(host=url)
    experiment = client.create_experiment("medgo")
    arguments = recurring_run_arguments(
        COMPILED_PATH,
        experiment_id=experiment.experiment_id,
        job_name="medgo-feedback-nightly",
        params={"data_min_pairs": "20", "deploy_smoke_require_refusal": "true"},
    )
    created = client.create_recurring_run(**arguments)
    assert created.recurring_run_id == "rr-1"
    run = recorded_recurring_run(recorded)
    assert run.display_name == "medgo-feedback-nightly" and run.service_account == "medgo-pipeline"
    check_recurring_run(run, {"data_min_pairs": 20, "deploy_smoke_require_refusal": True})
    # KFP's override reaches the top-level tasks; the nested ones keep their compiled settings.
    top = run.pipeline_spec["pipeline_spec"]["root"]["dag"]["tasks"]
    assert {name: task["cachingOptions"] for name, task in top.items()} == dict.fromkeys(top, {})


def test_the_export_step_is_never_cached():
    """A nightly run has the same inputs every night: a cached export would never export new feedback."""
    tasks = _docs()[0]["root"]["dag"]["tasks"]
    assert tasks["export-feedback"]["cachingOptions"] == {}
    assert tasks["feedback-preferences"]["cachingOptions"] == {"enableCache": True}
    gate = _docs()[0]["components"]["comp-condition-2"]["dag"]["tasks"]
    assert gate["deploy"]["cachingOptions"] == {}


def documented_command() -> list[str]:
    """The ``kfp recurring-run create`` command in the pipeline module's docstring, as a shell would split it."""
    lines = module.__doc__.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith("kfp --endpoint"))
    command = []
    for line in lines[start:]:
        command.append(line.strip().rstrip("\\").strip())
        if not line.rstrip().endswith("\\"):
            break
    return shlex.split(" ".join(command))


def test_the_documented_kfp_command_creates_that_recurring_run(kfp_api):
    url, recorded = kfp_api
    command = documented_command()
    assert command[:4] == ["kfp", "--endpoint", "$KFP_HOST", "recurring-run"]
    kfp_cli = Path(sys.executable).with_name("kfp")
    result = subprocess.run(
        [str(kfp_cli), "--endpoint", url, *command[3:]],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    run = recorded_recurring_run(recorded)
    assert run.display_name == "medgo-feedback-nightly"
    check_recurring_run(
        run,
        {
            "production_model_uri": "s3://medgo-models/medgo/latest/adapter",
            "eval_data_uri": "s3://medgo-data/eval/",
        },
    )


@pytest.mark.parametrize(
    "cron",
    [
        "0 0 2 * * *",
        "0 30 1 ? * MON-FRI",
        "0 */15 * * * *",
        "0 0 3 1,15 * ?",
        "@daily",
        "0 0 0 * JAN-MAR SUN",
    ],
)
def test_valid_cron_expressions(cron):
    assert validate_cron(cron) == cron


@pytest.mark.parametrize(
    ("cron", "message"),
    [
        ("0 2 * * *", "has 5 fields; KFP's has 6"),
        ("0 0 25 * * *", "hour: '25' is not between 0 and 23"),
        ("0 0 2 * * 8", "day of week: '8'"),
        ("0 0 2 ? * ?", None),
        ("0 0/0 2 * * *", "step '0' must be a positive number"),
        ("0 0 5-2 * * *", "runs backwards"),
        ("? 0 2 * * *", "'?' is only for the day fields"),
    ],
)
def test_invalid_cron_expressions_are_named(cron, message):
    if message is None:
        assert validate_cron(cron) == cron  # robfig accepts '?' in both day fields
        return
    with pytest.raises(ConfigError, match=message):
        validate_cron(cron)


def test_unknown_or_mistyped_parameters_fail_before_scheduling():
    with pytest.raises(ConfigError, match="no pipeline parameter 'data_min_pair'"):
        recurring_run_arguments(COMPILED_PATH, experiment_id="e", job_name="j", params={"data_min_pair": 3})
    with pytest.raises(ConfigError, match="parameter data_min_pairs: expected int"):
        recurring_run_arguments(
            COMPILED_PATH, experiment_id="e", job_name="j", params={"data_min_pairs": "many"}
        )
