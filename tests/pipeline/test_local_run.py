"""The whole pipeline through kfp.local (the same function the cluster runs), both sides of the gate."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medgo.demo import run_demo
from medgo.storage import read_manifest
from pipelines.medgo_pipeline import medgo_pipeline

pytestmark = pytest.mark.slow


def test_demo_pipeline_runs_end_to_end_and_serves_the_candidate(tmp_path, samples_dir):
    summary = run_demo(medgo_pipeline, tmp_path / "run", samples_dir=samples_dir)
    tasks = summary["tasks"]
    loops = {name for name in tasks if name.startswith("for-loop-")}
    assert len(loops) == 6  # the corpus steps' three ParallelFor fan-outs over two shard groups
    assert set(tasks) - loops == {
        "plan-corpus",
        "global-clusters",
        "finalize-corpus",
        "pack-corpus",
        "build-sft",
        "build-preferences",
        "train",
        "train-2",
        "train-3",
        "evaluate",
        "deploy",
    }
    # Reconciled data counts surface as KFP metrics.
    prep = tasks["finalize-corpus"]["metrics"]
    assert (
        prep["prepare/in"]
        == prep["prepare/kept"]
        + prep["prepare/filtered"]
        + prep["prepare/duplicates"]
        + prep["prepare/quarantined"]
    )
    assert prep["prepare/pii"] > 0
    # Lineage: the DPO model's manifest leads back through SFT and pretraining to the clean corpus.
    dpo = read_manifest(tasks["train-3"]["artifacts"]["trained"])
    sft = dpo["inputs"]["model"]["manifest"]
    pt = read_manifest(sft["inputs"]["model"]["uri"])
    assert (dpo["stage"], sft["stage"], pt["stage"]) == ("train.dpo", "train.sft", "train.pt")
    assert pt["inputs"]["data"]["manifest"]["stage"] == "data.pack"
    # Evaluation compared candidate and baseline on the same items, wrote a report, and the gate passed.
    assert tasks["evaluate"]["parameters"]["Output"] is True
    metrics = json.loads((Path(tasks["evaluate"]["artifacts"]["results"]) / "metrics.json").read_text())
    assert {"candidate", "baseline", "comparison", "gate"} <= set(metrics)
    assert "<html" in Path(tasks["evaluate"]["artifacts"]["report"]).read_text().lower()
    # The deploy step served the candidate over HTTP and got an answer through the OpenAI-compatible route.
    deployed = tasks["deploy"]["parameters"]
    assert deployed["endpoint"].startswith("http://127.0.0.1:") and deployed["endpoint"].endswith(
        "/openai/v1/chat/completions"
    )
    assert isinstance(deployed["answer"], str)
    record = json.loads((Path(tasks["deploy"]["artifacts"]["deployment"]) / "deployment.json").read_text())
    assert record["decision"] == "served-locally"


def test_failed_gate_blocks_deployment(tmp_path, samples_dir):
    summary = run_demo(
        medgo_pipeline,
        tmp_path / "run",
        samples_dir=samples_dir,
        overrides={
            "eval_gate_min_mcq_accuracy": 1.0,
            "train_pt_max_steps": 1,
            "train_sft_max_steps": 1,
            "train_dpo_max_steps": 1,
        },
    )
    tasks = summary["tasks"]
    assert tasks["evaluate"]["parameters"]["Output"] is False
    assert "deploy" not in tasks
    metrics = json.loads((Path(tasks["evaluate"]["artifacts"]["results"]) / "metrics.json").read_text())
    failed = [rule for rule in metrics["gate"]["rules"] if not rule["passed"]]
    assert failed and "mcq" in failed[0]["rule"]
