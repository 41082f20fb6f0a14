"""The demo's pretraining visibly learns: with the demo's own train_* parameters, on the bundled corpus
packed as the demo packs it, the mean of the last 3 logged losses is at least 25 % below the first 3."""

from __future__ import annotations

import json

import pytest

from medgo.config import PackConfig, TrainConfig
from medgo.demo import DEMO_PARAMETERS
from medgo.train.launch import launch_local

pytestmark = pytest.mark.slow


def test_demo_pretraining_loss_falls_by_a_quarter(sample_model_dir, samples_dir, tmp_path):
    from medgo.config import PrepareConfig
    from medgo.data.pack import pack_corpus
    from medgo.data.prepare import prepare_corpus

    prepare_corpus(str(samples_dir / "corpus"), tmp_path / "clean", PrepareConfig())
    pack_corpus(
        tmp_path / "clean",
        str(sample_model_dir),
        tmp_path / "packed",
        PackConfig(seq_len=DEMO_PARAMETERS["pack_seq_len"]),
    )
    p = DEMO_PARAMETERS
    cfg = TrainConfig(
        stage="pt",
        model_uri=str(sample_model_dir),
        data_uri=str(tmp_path / "packed"),
        output_uri=str(tmp_path / "pt"),
        use_lora=False,  # the pipeline's train_pt_full_finetune default
        learning_rate=p["train_pt_learning_rate"],
        max_steps=p["train_pt_max_steps"],
        per_device_batch_size=p["train_per_device_batch_size"],
        gradient_accumulation_steps=p["train_gradient_accumulation_steps"],
        save_steps=p["train_save_steps"],
    )
    launch_local(cfg, work_dir=tmp_path / "logs")
    rows = [json.loads(line) for line in (tmp_path / "pt" / "train_log.jsonl").read_text().splitlines()]
    losses = [r["loss"] for r in rows if "loss" in r]
    assert len(losses) == p["train_pt_max_steps"]
    first, last = sum(losses[:3]) / 3, sum(losses[-3:]) / 3
    assert last <= 0.75 * first, losses
