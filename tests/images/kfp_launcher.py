"""What Kubeflow Pipelines' v2 launcher does with a compiled Python component, so a test can run the
component's container the same way: read its command, args and interface from the compiled pipeline, build
the ``--executor_input`` JSON and substitute the placeholders.
"""

from __future__ import annotations

from pathlib import Path

import yaml

PIPELINE = Path(__file__).resolve().parents[2] / "pipelines" / "medgo_pipeline.yaml"
#: Where KFP's launcher has the Python executor write its output metadata.
KFP_OUTPUT_FILE = "/tmp/kfp_outputs/output_metadata.json"
#: Local mount point KFP gives s3:// artifact URIs (kfp.dsl.types.artifact_types); an emptyDir on backends
#: with kubeflow/pipelines#10857, so a non-root user can write there.
KFP_S3_MOUNT = "/s3"


def compiled_task(component: str, pipeline: Path = PIPELINE) -> tuple[dict, dict]:
    """The compiled pipeline's component spec and executor container spec for ``component``."""
    spec = list(yaml.safe_load_all(pipeline.read_text()))[0]
    component_spec = spec["components"][f"comp-{component}"]
    return component_spec, spec["deploymentSpec"]["executors"][component_spec["executorLabel"]]["container"]


def executor_input(component_spec: dict, parameters: dict, output_uris: dict[str, str]) -> dict:
    """The ``--executor_input`` KFP's v2 launcher hands a Python component: parameter values (defaults filled
    in as its driver does) and, for each output artifact, its name, type and URI, plus the output file."""
    values = {}
    for name, definition in component_spec["inputDefinitions"].get("parameters", {}).items():
        if name in parameters:
            values[name] = parameters[name]
        elif "defaultValue" in definition:
            default = definition["defaultValue"]
            values[name] = int(default) if definition["parameterType"] == "NUMBER_INTEGER" else default
        else:
            raise AssertionError(f"no value for the required input parameter {name!r}")
    assert not component_spec["inputDefinitions"].get("artifacts"), "input artifacts are not emulated here"
    outputs = {
        name: {
            "artifacts": [
                {"name": name, "type": definition["artifactType"], "uri": output_uris[name], "metadata": {}}
            ]
        }
        for name, definition in component_spec["outputDefinitions"]["artifacts"].items()
    }
    return {
        "inputs": {"parameterValues": values},
        "outputs": {"artifacts": outputs, "outputFile": KFP_OUTPUT_FILE},
    }


def substitute_placeholders(words: list[str], executor_input_json: str) -> list[str]:
    """The launcher's placeholder substitution for Python components: ``{{$}}`` is the executor input."""
    out = []
    for word in words:
        if word == "{{$}}":
            out.append(executor_input_json)
        elif "{{$" in word:
            raise AssertionError(
                f"the compiled component uses a placeholder this test does not emulate: {word}"
            )
        else:
            out.append(word)
    return out
