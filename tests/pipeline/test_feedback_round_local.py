"""A whole feedback round through kfp.local (the function the recurring run runs), on the demo's tiny model.

Doctors' feedback sits in a real store file; the round exports it, builds pairs and the data card, continues
DPO from a "production" LoRA adapter under torchrun, evaluates against that adapter, and smoke-tests the
candidate on a local ModelServer. A second round finds nothing new to export but still trains on all
feedback so far.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medgo.demo import collect_outputs
from medgo.feedback.store import FeedbackStore, FeedbackSubmission
from pipelines.feedback_round import feedback_round

pytestmark = pytest.mark.slow

QUESTIONS = [
    "高血压患者日常需要注意什么？",
    "发热三天应该怎么办？",
    "糖尿病患者饮食要注意什么？",
    "咳嗽一周需要就医吗？",
]
CORRECTIONS = [
    "低盐饮食，规律服药，定期监测血压。",
    "多饮水，体温超过38.5℃可服退热药，持续不退应就医。",
    "控制总热量，少吃精制糖，定时定量。",
    "咳嗽超过一周应就医，必要时拍胸片。",
]

LOCAL = {
    "feedback_service_url": "",
    "data_min_pairs": 2,
    "train_backend": "local",
    "train_nnodes": 1,
    "train_nproc_per_node": 1,
    "train_gpus_per_node": 0,
    "train_deepspeed": "none",
    "train_bf16": False,
    "train_dpo_learning_rate": 1e-3,
    "train_dpo_max_steps": 2,
    "train_per_device_batch_size": 2,
    "train_gradient_accumulation_steps": 1,
    "train_max_seq_len": 256,
    "eval_max_items_per_task": 4,
    "eval_max_new_tokens": 8,
    "eval_gate_min_mcq_accuracy": 0.0,
    "eval_gate_min_safety_rate": 0.0,
    "eval_gate_margin": 1.0,
    "eval_gate_min_items": 1,
    "eval_gate_n_bootstrap": 200,
    "deploy_target": "local",
    "deploy_runtime": "medgo-cpu",
    "deploy_smoke_require_refusal": False,
}


@pytest.fixture
def production_adapter(sample_model_dir, tmp_path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model

    from medgo.modeling import load_model

    torch.manual_seed(0)
    out = tmp_path / "production-adapter"
    config = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False)
    get_peft_model(load_model(str(sample_model_dir)), config).save_pretrained(out)
    return out


def fill_store(path: Path) -> None:
    store = FeedbackStore(path)
    for i, (question, correction) in enumerate(zip(QUESTIONS, CORRECTIONS, strict=True)):
        prompt = [{"role": "system", "content": "你是医学助手。"}, {"role": "user", "content": question}]
        store.record(f"r-{i}", "medgo", prompt, f"随便吃点药就好{i}。", 1)
        submission = FeedbackSubmission(f"fb-{i}", f"r-{i}", "unacceptable", "全科", f"d-{i}", correction)
        store.submit(submission, store.get(f"r-{i}"))
    store.close()


def run_round(out: Path, **arguments) -> dict:
    from kfp import local

    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(out / "pipeline_root"),
        workspace_root=str(out / "workspace"),
        raise_on_error=True,
    )
    feedback_round(**arguments)
    return collect_outputs(out / "pipeline_root")


def test_a_feedback_round_goes_from_stored_feedback_to_a_smoke_tested_candidate(
    tmp_path, production_adapter, samples_dir
):
    db = tmp_path / "feedback.sqlite"
    fill_store(db)
    arguments = {
        **LOCAL,
        "production_model_uri": str(production_adapter),
        "eval_data_uri": str(samples_dir / "eval"),
        "feedback_db_path": str(db),
        "feedback_export_uri": str(tmp_path / "exports"),
    }
    tasks = run_round(tmp_path / "round-1", **arguments)
    assert {"export-feedback", "feedback-preferences", "train", "evaluate", "deploy"} <= set(tasks)
    assert "fail-rollout" not in tasks
    exported = tasks["export-feedback"]["metrics"]
    assert exported["export/new_entries"] == 4 and exported["feedback/entries"] == 4
    card = tasks["feedback-preferences"]["metrics"]
    assert card["round/entries"] == 4 and card["round/pairs"] == 4 and card["round/conflicts"] == 0
    assert "round/scrubbed_identifiers" in card
    markdown = Path(tasks["feedback-preferences"]["artifacts"]["data_card"]).read_text()
    assert "| preference pairs | 4 |" in markdown
    dpo = json.loads((Path(tasks["train"]["artifacts"]["trained"]) / "manifest.json").read_text())
    assert dpo["stage"] == "train.dpo" and dpo["inputs"]["model"]["uri"] == str(production_adapter)
    results = json.loads((Path(tasks["evaluate"]["artifacts"]["results"]) / "metrics.json").read_text())
    assert {"candidate", "baseline", "comparison", "gate"} <= set(results)
    assert tasks["deploy"]["parameters"]["decision"] == "served-locally"

    # The next night: nothing new to export, the round still sees all feedback (and skips training here).
    second = run_round(tmp_path / "round-2", **{**arguments, "data_min_pairs": 1000})
    assert second["export-feedback"]["metrics"]["export/new_entries"] == 0
    assert second["feedback-preferences"]["metrics"]["round/entries"] == 4
    assert second["feedback-preferences"]["parameters"]["Output"] is False and "train" not in second
