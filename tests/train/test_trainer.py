"""The trainer under real torchrun: pt/sft/dpo, two simulated nodes, ZeRO-2 over gloo, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medgo.config import TrainConfig, load_config
from medgo.errors import MedgoError
from medgo.storage import read_manifest
from medgo.train.launch import config_to_args, launch_local
from medgo.train.trainer import parse_args
from tests.train.conftest import train_config as _config

pytestmark = pytest.mark.slow


def _logits(model_dir: str, adapter: str | None = None):
    import torch

    from medgo.modeling import load_model, load_tokenizer

    tok = load_tokenizer(model_dir if adapter is None else adapter)
    model = load_model(model_dir, adapter_uri=adapter).eval()
    ids = tok("高血压患者应低盐饮食", return_tensors="pt")
    with torch.no_grad():
        return model(**ids).logits


def test_pretraining_full_finetune_learns_and_reloads(sample_model_dir, packed_dir, tmp_path):
    out = tmp_path / "pt"
    launch_local(
        _config("pt", sample_model_dir, packed_dir, out, use_lora=False, max_steps=10, learning_rate=1e-2),
        work_dir=tmp_path / "logs",
    )
    counts = read_manifest(out)["counts"]
    assert counts["kind"] == "full" and counts["steps"] == 10
    assert counts["final_loss"] < counts["first_loss"]
    assert not _logits(str(sample_model_dir)).allclose(_logits(str(out)))
    assert (out / "tokenizer.json").exists() and (out / "train_log.jsonl").exists()


def test_sft_writes_a_lora_adapter_on_the_base_uri(sft_adapter, sample_model_dir):
    adapter_cfg = json.loads((sft_adapter / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == str(sample_model_dir)
    assert (adapter_cfg["r"], adapter_cfg["lora_alpha"], adapter_cfg["lora_dropout"]) == (16, 8, 0.05)
    assert (sft_adapter / "adapter_model.safetensors").stat().st_size > 10_000
    assert (sft_adapter / "chat_template.jinja").exists()
    # The adapter changes the model's output (it is not an empty or all-zero save).
    assert not _logits(str(sample_model_dir)).allclose(_logits(str(sample_model_dir), str(sft_adapter)))
    manifest = read_manifest(sft_adapter)
    assert manifest["counts"]["kind"] == "lora_adapter" and manifest["inputs"]["data"]["manifest"]["stage"]


def test_sft_exports_a_merged_bf16_model_and_a_model_card(sft_adapter, sample_model_dir, sft_dir):
    import torch
    from transformers import AutoModelForCausalLM

    from medgo.modeling import load_tokenizer

    merged = sft_adapter / "merged"
    model = AutoModelForCausalLM.from_pretrained(merged)
    assert model.dtype == torch.bfloat16 and not (merged / "adapter_config.json").exists()
    load_tokenizer(str(merged), require_chat_template=True)
    from medgo.modeling import load_model

    expected = load_model(str(sample_model_dir), adapter_uri=str(sft_adapter)).merge_and_unload()
    base = load_model(str(sample_model_dir))
    saved, want, before = model.state_dict(), expected.state_dict(), base.state_dict()
    name = "model.layers.0.self_attn.q_proj.weight"
    torch.testing.assert_close(
        saved[name].float(), want[name].to(torch.bfloat16).float(), atol=1e-2, rtol=1e-2
    )
    delta = (want[name] - before[name]).abs()
    assert delta.max() > 0  # the adapter was merged in, not dropped
    assert set(saved) == set(want)
    card = (sft_adapter / "README.md").read_text()
    assert (
        str(sample_model_dir) in card and '"stage": "data.sft"' in card and '"learning_rate": 0.005' in card
    )
    assert '"final_loss"' in card
    assert "merged/model.safetensors" in read_manifest(sft_adapter)["files"]


def test_an_empty_dataset_fails_before_training(sample_model_dir, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "train.jsonl").write_text("")
    with pytest.raises(MedgoError, match="SFT data at .* is empty"):
        launch_local(_config("sft", sample_model_dir, empty, tmp_path / "out"), work_dir=tmp_path / "l")


def _assert_dpo_continued_the_sft_adapter(out: Path, sft_adapter: Path, base: Path) -> dict:
    counts = read_manifest(out)["counts"]
    assert counts["kind"] == "lora_adapter"
    assert counts["first_loss"] == pytest.approx(
        0.6931, abs=1e-3
    )  # log 2: policy == reference (the SFT policy)
    adapter_cfg = json.loads((out / "adapter_config.json").read_text())
    assert adapter_cfg["base_model_name_or_path"] == str(base)  # the SFT adapter's base, not the adapter dir
    assert not (out / "ref").exists()  # the frozen reference copy is not exported
    dpo_logits = _logits(str(base), str(out))
    assert not dpo_logits.allclose(_logits(str(base), str(sft_adapter)))  # DPO moved the policy
    return counts


def test_dpo_continues_the_sft_adapter_against_the_sft_reference(
    sft_adapter, sample_model_dir, prefs_dir, tmp_path
):
    out = tmp_path / "dpo"
    launch_local(_config("dpo", sft_adapter, prefs_dir, out, max_steps=4), work_dir=tmp_path / "logs")
    assert _assert_dpo_continued_the_sft_adapter(out, sft_adapter, sample_model_dir)["steps"] == 4
    from medgo.modeling import load_model, load_tokenizer

    tok = load_tokenizer(str(out), require_chat_template=True)
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "头痛怎么办？"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )
    generated = load_model(str(out)).generate(**ids, max_new_tokens=4, do_sample=False)
    assert generated.shape[1] > ids["input_ids"].shape[1]


def test_dpo_under_zero3_with_two_processes(reference_run, sft_adapter, sample_model_dir):
    out = reference_run("dpo", "zero3")
    assert _assert_dpo_continued_the_sft_adapter(out, sft_adapter, sample_model_dir)["steps"] == 6


def test_two_simulated_nodes_train_one_model(sample_model_dir, sft_dir, tmp_path):
    out = tmp_path / "two-nodes"
    logs = launch_local(
        _config("sft", sample_model_dir, sft_dir, out, max_steps=3, gradient_checkpointing=True),
        nnodes=2,
        work_dir=tmp_path / "logs",
    )
    assert read_manifest(out)["counts"]["steps"] == 3
    node0, node1 = (logs / "node-0.log").read_text(), (logs / "node-1.log").read_text()
    assert "world_size=2" in node0 and "saved stage=sft" in node0
    assert "saved stage=sft" not in node1  # only global rank 0 writes


def test_zero2_and_zero3_over_gloo_agree_and_save_real_adapters(reference_run, sample_model_dir):
    """Two processes per run. ZeRO-3 shards the LoRA weights too; its save must gather them (an empty
    adapter is a known upstream failure mode), so both adapters must load and change the model."""
    counts = {}
    for zero in ("zero2", "zero3"):
        out = reference_run("sft", zero)
        counts[zero] = read_manifest(out)["counts"]
        assert counts[zero]["steps"] == 6
        assert (out / "adapter_model.safetensors").stat().st_size > 10_000
        assert not _logits(str(sample_model_dir)).allclose(_logits(str(sample_model_dir), str(out)))
    assert counts["zero3"]["first_loss"] == pytest.approx(counts["zero2"]["first_loss"], rel=1e-3)
    assert counts["zero3"]["final_loss"] == pytest.approx(counts["zero2"]["final_loss"], rel=2e-2)


def test_missing_dataset_fails_before_training_with_the_cause(sample_model_dir, tmp_path):
    with pytest.raises(MedgoError, match=r"SFT data not found: .*nope"):
        launch_local(
            _config("sft", sample_model_dir, tmp_path / "nope", tmp_path / "out"), work_dir=tmp_path / "l"
        )


def test_tokenizer_without_chat_template_is_rejected(sample_model_dir, sft_dir, tmp_path):
    import shutil

    plain = tmp_path / "plain"
    shutil.copytree(sample_model_dir, plain)
    (plain / "chat_template.jinja").unlink(missing_ok=True)
    cfg = json.loads((plain / "tokenizer_config.json").read_text())
    cfg.pop("chat_template", None)
    (plain / "tokenizer_config.json").write_text(json.dumps(cfg))
    with pytest.raises(MedgoError, match="has no chat template"):
        launch_local(_config("sft", plain, sft_dir, tmp_path / "out"), work_dir=tmp_path / "l")


def test_flash_attention_request_without_cuda_is_rejected(sample_model_dir, sft_dir, tmp_path):
    with pytest.raises(MedgoError, match="flash_attention_2 needs a CUDA GPU"):
        launch_local(
            _config(
                "sft", sample_model_dir, sft_dir, tmp_path / "out", attn_implementation="flash_attention_2"
            ),
            work_dir=tmp_path / "l",
        )


def test_config_travels_losslessly_as_set_arguments():
    cfg = _config(
        "dpo",
        "s3://m/base",
        Path("/d"),
        Path("/o"),
        dpo_beta=0.25,
        lora={"r": 8, "alpha": 4, "dropout": 0.1, "target_modules": ["q_proj"]},
    )
    args = parse_args(["--stage", "dpo", *config_to_args(cfg)])
    assert load_config(TrainConfig, None, args.overrides, stage=args.stage) == cfg
