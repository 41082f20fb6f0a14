"""LocalBackend on a real tiny Qwen2: batching must not change answers, scores must be exact."""

from __future__ import annotations

import pytest
import torch

from medgo.eval.backends import Backend, LocalBackend

CHATS = [
    [{"role": "user", "content": "高血压吃什么药好？"}],
    [
        {"role": "system", "content": "你是医学助手。"},
        {"role": "user", "content": "头痛三天，伴发热，需要做什么检查？请详细说明。"},
    ],
    [{"role": "user", "content": "感冒了怎么办？"}],
]


def test_implements_the_backend_protocol(tiny_backend):
    assert isinstance(tiny_backend, Backend)


def test_batched_left_padded_generation_equals_one_at_a_time(chatty_model_dir):
    batched = LocalBackend(str(chatty_model_dir), batch_size=3).generate(CHATS, max_new_tokens=12)
    single = LocalBackend(str(chatty_model_dir), batch_size=1)
    assert batched == [single.generate([chat], max_new_tokens=12)[0] for chat in CHATS]
    assert len(set(batched)) == len(CHATS), "replies should differ by prompt, or this test proves nothing"
    assert all("<|im_end|>" not in reply and "<|endoftext|>" not in reply for reply in batched)


def manual_choice_logprob(backend: LocalBackend, chat, choice: str) -> float:
    """Sum of the choice tokens' log-probs from one unbatched forward over prompt + choice."""
    tok = backend.tokenizer
    prompt = tok(
        tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True), add_special_tokens=False
    )["input_ids"]
    cont = tok(choice, add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = backend.model(input_ids=torch.tensor([prompt + cont])).logits[0].float()
    logprobs = torch.log_softmax(logits, dim=-1)
    return sum(float(logprobs[len(prompt) - 1 + k, t]) for k, t in enumerate(cont))


def test_choice_logprobs_match_an_unbatched_forward(chatty_backend):
    choices = ["A", "B", "C", "阿司匹林片"]  # the last spans several tokens, so rows are padded
    assert len(chatty_backend.tokenizer("阿司匹林片", add_special_tokens=False)["input_ids"]) > 1
    scores = chatty_backend.choice_logprobs(CHATS, choices)
    assert [len(row) for row in scores] == [len(choices)] * len(CHATS)
    for chat, row in zip(CHATS, scores, strict=True):
        expected = [manual_choice_logprob(chatty_backend, chat, c) for c in choices]
        assert row == pytest.approx(expected, abs=1e-4)
        assert all(s < 0 for s in row)


def test_choice_logprobs_rejects_empty_choices(tiny_backend):
    with pytest.raises(ValueError, match="at least one choice"):
        tiny_backend.choice_logprobs(CHATS[:1], [])
    with pytest.raises(ValueError, match="tokenizes to nothing"):
        tiny_backend.choice_logprobs(CHATS[:1], ["A", ""])


@pytest.mark.filterwarnings("ignore:.*is_gradient_checkpointing:FutureWarning")
def test_adapter_is_applied_and_tokenizer_found_with_the_base(tiny_model_dir, tiny_backend, tmp_path):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(str(tiny_model_dir))
    torch.manual_seed(0)
    peft_model = get_peft_model(
        base, LoraConfig(r=4, lora_alpha=64, target_modules="all-linear", init_lora_weights=False)
    )
    peft_model.save_pretrained(tmp_path / "adapter")  # no tokenizer saved with it

    with_adapter = LocalBackend(str(tiny_model_dir), adapter_uri=str(tmp_path / "adapter"))
    assert with_adapter.name.endswith("adapter")
    plain = tiny_backend.choice_logprobs(CHATS[:1], ["A", "B"])[0]
    adapted = with_adapter.choice_logprobs(CHATS[:1], ["A", "B"])[0]
    assert adapted != pytest.approx(plain, abs=1e-3)
