"""SFT on the real Qwen2 tokenizer and its stock ChatML template (no {% generation %} markers): the loss is on
assistant tokens only, in the batches the trainer really feeds the model, and under torchrun with 2
processes over gloo. Turning the masking off makes these tests fail."""

from __future__ import annotations

import json

import pytest

from medgo.errors import InputError
from medgo.storage import read_manifest
from medgo.train.launch import launch_local
from medgo.train.sft_tokens import IGNORE_INDEX, tokenize_conversation
from tests.train.conftest import train_config

CHAT = [
    {"role": "user", "content": "头痛三天，伴恶心，怎么办？"},
    {"role": "assistant", "content": "建议测量血压，必要时就医。"},
    {"role": "user", "content": "血压160/100。"},
    {"role": "assistant", "content": "属于2级高血压，请尽快到心内科就诊。"},
]


def _trained_text(tokenizer, example) -> list[str]:
    """The labelled stretches of an example, decoded."""
    pieces, current = [], []
    for token, label in zip(example.input_ids, example.labels, strict=True):
        if label == IGNORE_INDEX:
            if current:
                pieces.append(tokenizer.decode(current))
                current = []
        else:
            current.append(token)
    if current:
        pieces.append(tokenizer.decode(current))
    return pieces


def test_the_real_template_is_qwen2s_chatml(qwen2_tokenizer):
    text = qwen2_tokenizer.apply_chat_template(CHAT[:1], tokenize=False, add_generation_prompt=True)
    assert text == (
        "<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
        "<|im_start|>user\n头痛三天，伴恶心，怎么办？<|im_end|>\n<|im_start|>assistant\n"
    )
    assert "{% generation %}" not in qwen2_tokenizer.chat_template
    assert qwen2_tokenizer.convert_tokens_to_ids(["<|endoftext|>", "<|im_start|>", "<|im_end|>"]) == [
        151643,
        151644,
        151645,
    ]
    ids = qwen2_tokenizer("患者男，65岁，反复胸闷3年。", add_special_tokens=False)["input_ids"]
    assert qwen2_tokenizer.decode(ids) == "患者男，65岁，反复胸闷3年。" and max(ids) < 151643


def test_only_each_answer_and_its_end_of_turn_token_are_trained(qwen2_tokenizer):
    example = tokenize_conversation(qwen2_tokenizer, CHAT, max_len=512)
    assert _trained_text(qwen2_tokenizer, example) == [
        "建议测量血压，必要时就医。<|im_end|>",
        "属于2级高血压，请尽快到心内科就诊。<|im_end|>",
    ]
    truncated = tokenize_conversation(qwen2_tokenizer, CHAT, max_len=40)
    assert len(truncated.input_ids) == 40 and _trained_text(qwen2_tokenizer, truncated)[0].startswith("建议")


def test_a_template_that_is_not_prefix_preserving_is_refused(qwen2_tokenizer):
    import copy

    odd = copy.copy(qwen2_tokenizer)
    odd.chat_template = "{% for m in messages|reverse %}{{ m['content'] }}{% endfor %}"
    with pytest.raises(InputError, match="prefix-preserving"):
        tokenize_conversation(odd, CHAT, max_len=128)


def test_the_trainers_batches_carry_the_assistant_mask(qwen2_model_dir, sft_dir, tmp_path, monkeypatch):
    """The batches SFTTrainer's own data loader yields (single process, no training)."""
    from medgo.modeling import load_tokenizer
    from medgo.train.trainer import build_sft_trainer

    cfg = train_config("sft", qwen2_model_dir, sft_dir, tmp_path / "out", max_seq_len=256)
    trainer, _, counts = build_sft_trainer(cfg, str(tmp_path / "ckpt"))
    tokenizer = load_tokenizer(str(qwen2_model_dir))
    batch = next(iter(trainer.get_train_dataloader()))
    im_start, im_end = 151644, 151645
    for ids, labels in zip(batch["input_ids"].tolist(), batch["labels"].tolist(), strict=True):
        trained = [i for i, label in zip(ids, labels, strict=True) if label != IGNORE_INDEX]
        assert trained and im_start not in trained and trained.count(im_end) >= 1
        decoded = tokenizer.decode(trained)
        assert "user" not in decoded and "You are a helpful assistant." not in decoded
        first = labels.index(next(label for label in labels if label != IGNORE_INDEX))
        assert tokenizer.decode(ids[first - 3 : first]) == "<|im_start|>assistant\n"
    assert 0 < counts["loss_tokens"] < counts["input_tokens"] / 2


@pytest.mark.slow
def test_two_process_sft_on_the_real_template_trains_on_assistant_tokens_only(
    qwen2_model_dir, qwen2_tokenizer, sft_dir, tmp_path
):
    out = tmp_path / "sft"
    cfg = train_config("sft", qwen2_model_dir, sft_dir, out, max_steps=2, max_seq_len=256, learning_rate=1e-3)
    launch_local(cfg, nproc_per_node=2, work_dir=tmp_path / "logs")
    counts = read_manifest(out)["counts"]
    # Independently: each answer's content + <|im_end|>, tokenised on its own, is what is trained.
    expected_loss = expected_input = 0
    for line in (sft_dir / "train.jsonl").read_text().splitlines():
        messages = json.loads(line)["messages"]
        text = qwen2_tokenizer.apply_chat_template(messages, tokenize=False)
        expected_input += min(256, len(qwen2_tokenizer(text, add_special_tokens=False)["input_ids"]))
        for m in messages:
            if m["role"] == "assistant":
                expected_loss += len(
                    qwen2_tokenizer(m["content"] + "<|im_end|>", add_special_tokens=False)["input_ids"]
                )
    assert counts["input_tokens"] == expected_input
    assert counts["loss_tokens"] == pytest.approx(
        expected_loss, abs=counts["sft_records_answer_beyond_max_seq_len"] * 256 + 3
    )
    assert counts["loss_tokens"] < 0.6 * counts["input_tokens"]
    assert counts["steps"] == 2 and counts["final_loss"] is not None
    assert (out / "chat_template.jinja").read_text() == qwen2_tokenizer.chat_template


@pytest.mark.slow
def test_dpo_and_evaluation_use_the_same_stock_template(
    qwen2_model_dir, qwen2_tokenizer, prefs_dir, tmp_path
):
    from medgo.eval.backends import LocalBackend

    out = tmp_path / "dpo"
    cfg = train_config("dpo", qwen2_model_dir, prefs_dir, out, max_steps=2, max_seq_len=256)
    launch_local(cfg, work_dir=tmp_path / "logs")
    counts = read_manifest(out)["counts"]
    assert counts["steps"] == 2 and counts["first_loss"] == pytest.approx(0.6931, abs=1e-3)
    assert (out / "chat_template.jinja").read_text() == qwen2_tokenizer.chat_template
    backend = LocalBackend(str(out), device="cpu")
    prompt = backend._prompt_text([{"role": "user", "content": "发热怎么办？"}])
    assert prompt.startswith("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n")
    assert prompt.endswith("<|im_start|>user\n发热怎么办？<|im_end|>\n<|im_start|>assistant\n")
    assert 151645 in backend._eos_ids  # answers stop at <|im_end|>
    (answer,) = backend.generate([[{"role": "user", "content": "发热怎么办？"}]], max_new_tokens=3)
    assert isinstance(answer, str)
