"""The committed pipeline YAML is what the pipeline function compiles to, and carries the cluster settings."""

from __future__ import annotations

import yaml

from pipelines.medgo_pipeline import COMPILED_PATH, compile_pipeline


def test_committed_yaml_matches_a_fresh_compile(tmp_path):
    fresh = compile_pipeline(tmp_path / "medgo_pipeline.yaml").read_text()
    assert COMPILED_PATH.read_text() == fresh, (
        "pipelines/medgo_pipeline.yaml is stale: run `make compile` (medgo pipeline compile) and commit it"
    )


def _docs():
    return list(yaml.safe_load_all(COMPILED_PATH.read_text()))


def test_parameters_are_stage_prefixed_and_documented():
    spec = _docs()[0]
    params = spec["root"]["inputDefinitions"]["parameters"]
    uris = {"base_model_uri", "corpus_uri", "sft_sources_uri", "preference_labels_uri", "eval_data_uri"}
    for name, definition in params.items():
        assert name in uris or name.split("_")[0] in {"data", "pack", "train", "eval", "deploy"}, name
        assert definition.get("description"), f"parameter {name} has no description"


def test_deploy_runs_only_behind_the_gate():
    dag = _docs()[0]["root"]["dag"]["tasks"]
    assert "deploy" not in dag
    condition = dag["condition-1"]
    assert "evaluate" in condition["dependentTasks"]
    assert "pipelinechannel--evaluate-Output" in condition["triggerPolicy"]["condition"]


def test_cluster_settings_come_from_kfp_kubernetes():
    platform = _docs()[1]["platforms"]["kubernetes"]["deploymentSpec"]["executors"]
    train = platform["exec-train"]
    assert train["pvcMount"][0]["mountPath"] == "/mnt/medgo-data"
    assert {e["envVar"] for e in train["secretAsEnv"][0]["keyToEnv"]} >= {
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
    }
    assert (
        train["activeDeadlineSeconds"] == str(7 * 24 * 3600)
        or train["activeDeadlineSeconds"] == 7 * 24 * 3600
    )
    evaluate = platform["exec-evaluate"]
    assert evaluate["nodeSelector"]["labels"] == {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
    assert evaluate["tolerations"][0]["key"] == "nvidia.com/gpu"


def test_every_train_step_takes_its_launch_settings_from_the_pipeline_parameters():
    tasks = _docs()[0]["root"]["dag"]["tasks"]
    train_steps = [t for t in tasks.values() if t["componentRef"]["name"].startswith("comp-train")]
    assert len(train_steps) == 3
    for step in train_steps:
        inputs = step["inputs"]["parameters"]
        for arg, param in (("backend", "train_backend"), ("trainer_api", "train_trainer_api")):
            assert inputs[arg] == {"componentInputParameter": param}, (step["taskInfo"]["name"], arg)
