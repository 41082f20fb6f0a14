"""The memory planner against DeepSpeed's own estimator, real parameter counts and the CLI."""

from __future__ import annotations

import json

import pytest

from medgo.cli import main
from medgo.errors import InputError
from medgo.train.plan import (
    KNOWN_MODELS,
    ZERO_CONFIGS,
    deepspeed_model_states,
    model_states_bytes,
    plan,
    resolve_shape,
    shape_from_config,
)


@pytest.mark.parametrize("name, nodes, gpus", [("qwen2-7b", 1, 8), ("qwen2-72b", 8, 8)])
@pytest.mark.parametrize("deepspeed", ZERO_CONFIGS)
def test_full_finetuning_model_states_agree_with_deepspeeds_estimator(name, nodes, gpus, deepspeed):
    shape = KNOWN_MODELS[name]
    ours = sum(model_states_bytes(shape, deepspeed, nodes * gpus, shape.total_params()))
    theirs = deepspeed_model_states(shape, deepspeed, nodes, gpus)
    assert ours == pytest.approx(theirs, rel=0.10)


@pytest.mark.parametrize(
    "name, published", [("qwen2-0.5b", 0.494e9), ("qwen2-7b", 7.616e9), ("qwen2-72b", 72.71e9)]
)
def test_parameter_counts_match_the_published_sizes(name, published):
    assert KNOWN_MODELS[name].total_params() == pytest.approx(published, rel=0.002)


def test_counts_match_a_real_model_built_from_a_config_json(tmp_path):
    """Parameters and LoRA parameters as transformers and PEFT count them (weights on the meta device)."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import Qwen2Config, Qwen2ForCausalLM

    config = Qwen2Config(
        hidden_size=256,
        num_hidden_layers=3,
        num_attention_heads=8,
        num_key_value_heads=2,
        intermediate_size=704,
        vocab_size=5000,
        tie_word_embeddings=False,
    )
    config.save_pretrained(tmp_path)
    shape = resolve_shape(str(tmp_path))
    with torch.device("meta"):
        model = Qwen2ForCausalLM(config)
    assert shape.total_params() == sum(p.numel() for p in model.parameters())
    peft = get_peft_model(model, LoraConfig(r=16, target_modules="all-linear"))
    trainable = sum(p.numel() for p in peft.parameters() if p.requires_grad)
    assert shape.lora_params(16) == trainable


def test_72b_lora_sft_on_64_a100s_picks_zero3_with_checkpointing_and_sizes_the_pod():
    p = plan("qwen2-72b", nodes=8, gpus_per_node=8, gpu_mem_gb=80, stage="sft", lora=True, seq_len=4096)
    assert (p.choice.deepspeed, p.choice.gradient_checkpointing) == ("zero3", True)
    by = {(e.deepspeed, e.gradient_checkpointing): e for e in p.estimates}
    assert not by[("zero2", True)].fits and by[("zero2", True)].params_gib > 80  # frozen base replicated
    assert by[("zero3", False)].activations_gib > 5 * by[("zero3", True)].activations_gib
    assert "zero2 needs" in p.reason and "fits" in p.reason
    assert "does not apply" in p.lora_note
    memory, shm = int(p.pod.memory.removesuffix("Gi")), int(p.pod.shm_size.removesuffix("Gi"))
    assert memory >= p.pod.host_memory_gib + shm and shm >= 16 and int(p.pod.cpu) >= 16


def test_dpo_counts_chosen_and_rejected_and_nothing_fits_is_said():
    sft = plan("qwen2-7b", nodes=1, gpus_per_node=8, gpu_mem_gb=80, stage="sft", lora=True)
    dpo = plan("qwen2-7b", nodes=1, gpus_per_node=8, gpu_mem_gb=80, stage="dpo", lora=True)
    assert dpo.estimates[0].activations_gib == pytest.approx(2 * sft.estimates[0].activations_gib, rel=1e-3)
    tiny_gpu = plan("qwen2-72b", nodes=1, gpus_per_node=1, gpu_mem_gb=16, stage="pt", lora=False)
    assert tiny_gpu.choice is None and "nothing fits" in tiny_gpu.reason


def test_a_config_json_with_missing_fields_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="hidden_size"):
        shape_from_config({"num_attention_heads": 2}, name="broken")
    with pytest.raises(InputError, match="unknown model"):
        resolve_shape(str(tmp_path / "nope"))


def test_cli_plan_prints_the_choice_and_json(capsys):
    assert (
        main(
            [
                "plan",
                "--model",
                "qwen2-72b",
                "--nodes",
                "8",
                "--gpus-per-node",
                "8",
                "--gpu-mem-gb",
                "80",
                "--stage",
                "sft",
                "--lora",
                "--seq-len",
                "4096",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "choice: zero3 with gradient checkpointing" in out and "pod: cpu" in out
    assert main(["plan", "--model", "qwen2-0.5b", "--gpus-per-node", "1", "--full", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["choice"]["deepspeed"] == "zero2" and data["trainable_params"] == data["total_params"]
    assert main(["plan", "--model", "qwen2-7b", "--stage", "rl"]) == 2
