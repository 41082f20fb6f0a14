"""What the evaluation asks of a model: greedy answers to chats, and option log-likelihoods.

Tasks talk to a :class:`Backend`, never to transformers directly, so the same task code can
score a local checkpoint (:class:`LocalBackend`) or, later, a deployed OpenAI-compatible
endpoint (generation only; an endpoint that returns prompt log-probs can score MCQ too).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Protocol, runtime_checkable

from tqdm.auto import tqdm

from medgo.chat import Messages
from medgo.logs import fields

log = logging.getLogger(__name__)

#: A conversation in TRL's conversational format: ``[{"role": ..., "content": ...}, ...]``.


@runtime_checkable
class Backend(Protocol):
    """A model under evaluation."""

    #: Identifies the model in results and logs (a URI, never prompt text).
    name: str

    def generate(self, chats: Sequence[Messages], max_new_tokens: int) -> list[str]:
        """The greedy assistant reply to each chat, without the prompt or special tokens."""
        ...

    def choice_logprobs(self, chats: Sequence[Messages], choices: Sequence[str]) -> list[list[float]]:
        """For each chat, the log-likelihood of each choice as the start of the assistant's reply."""
        ...


def _batches(indices: Sequence[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(indices), size):
        yield list(indices[start : start + size])


class LocalBackend:
    """A transformers checkpoint (optionally with a LoRA adapter) run in this process.

    Generation is batched greedy decoding with left padding and the KV cache; prompts are
    sorted by length so a batch pads little. Option scoring runs one forward pass per question
    over a batch of ``prompt + choice`` rows and sums the choice tokens' log-probabilities.
    """

    def __init__(
        self, model_uri: str, adapter_uri: str | None = None, batch_size: int = 8, device: str | None = None
    ) -> None:
        from medgo.modeling import input_device, load_for_inference, stop_token_ids

        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.name = model_uri if not adapter_uri else f"{model_uri}+{adapter_uri}"
        self.batch_size = batch_size
        # One download per s3:// URI; several GPUs share a large model through a device map.
        self.model, self.tokenizer = load_for_inference(model_uri, adapter_uri, device=device)
        self.tokenizer.padding_side = "left"
        self.device = input_device(self.model)
        self._eos_ids = stop_token_ids(self.tokenizer, self.model)
        log.info(
            "loaded model for evaluation",
            extra=fields(model=self.name, device=str(self.device), batch_size=batch_size),
        )

    def _prompt_text(self, chat: Messages) -> str:
        return self.tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)

    def generate(self, chats: Sequence[Messages], max_new_tokens: int) -> list[str]:
        import torch
        from transformers import GenerationConfig

        texts = [self._prompt_text(chat) for chat in chats]
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=False,
            use_cache=True,
            eos_token_id=self._eos_ids,
            pad_token_id=self.tokenizer.pad_token_id,
        )
        replies: list[str] = [""] * len(texts)
        progress = tqdm(total=len(texts), desc="generate", unit="prompt", leave=False)
        with torch.inference_mode():
            for batch in _batches(order, self.batch_size):
                enc = self.tokenizer(
                    [texts[i] for i in batch], return_tensors="pt", padding=True, add_special_tokens=False
                ).to(self.device)
                out = self.model.generate(**enc, generation_config=config)
                new_tokens = out[:, enc["input_ids"].shape[1] :]
                for i, reply in zip(
                    batch, self.tokenizer.batch_decode(new_tokens, skip_special_tokens=True), strict=True
                ):
                    replies[i] = reply.strip()
                progress.update(len(batch))
        progress.close()
        return replies

    def choice_logprobs(self, chats: Sequence[Messages], choices: Sequence[str]) -> list[list[float]]:
        import torch

        if not choices:
            raise ValueError("choice_logprobs needs at least one choice")
        # Prompt and choice are tokenised apart so a choice is the same tokens after every prompt.
        choice_ids = [self.tokenizer(c, add_special_tokens=False)["input_ids"] for c in choices]
        if any(not ids for ids in choice_ids):
            raise ValueError(f"a choice tokenizes to nothing: {list(choices)!r}")
        pad_id = self.tokenizer.pad_token_id
        longest = max(len(ids) for ids in choice_ids)
        scores: list[list[float]] = []
        with torch.inference_mode():
            for chat in tqdm(chats, desc="score options", unit="question", leave=False):
                prompt_ids = self.tokenizer(self._prompt_text(chat), add_special_tokens=False)["input_ids"]
                rows = [prompt_ids + ids + [pad_id] * (longest - len(ids)) for ids in choice_ids]
                mask = [[1] * (len(prompt_ids) + len(ids)) + [0] * (longest - len(ids)) for ids in choice_ids]
                input_ids = torch.tensor(rows, device=self.device)
                attention_mask = torch.tensor(mask, device=self.device)
                # Only the positions that predict choice tokens: the last prompt position onward.
                logits = (
                    self.model(input_ids=input_ids, attention_mask=attention_mask, logits_to_keep=longest + 1)
                    .logits[:, :-1]
                    .float()
                )
                logprobs = torch.log_softmax(logits, dim=-1)
                row_scores = []
                for row, ids in enumerate(choice_ids):
                    # Under a device map the logits live on the last shard's device, not the input's.
                    targets = torch.tensor(ids, device=logprobs.device)
                    picked = logprobs[row, torch.arange(len(ids), device=logprobs.device), targets]
                    row_scores.append(float(picked.sum()))
                scores.append(row_scores)
        return scores
