"""SFT examples with the loss on assistant tokens only, for any prefix-preserving chat template.

TRL's ``assistant_only_loss`` needs ``{% generation %}`` markers in the template; Qwen2's published
template has none (a trainer relying on them fails at start-up on the real base model). Instead the
assistant spans are found from the rendered text itself: rendering the conversation up to an
assistant turn with the generation prompt gives the text before the answer, rendering it through
that turn gives the text after it, and the answer (its content and the end-of-turn token, which the
model must learn to emit) is what lies between. Tokens whose character offsets fall in a span are
trained; every other token gets the label -100. The template must render a conversation's prefix as
a prefix of the whole (ChatML does); one that does not is an error, not a silent full-sequence loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from medgo.errors import InputError

IGNORE_INDEX = -100


@dataclass(frozen=True)
class SftExample:
    input_ids: list[int]
    labels: list[int]

    @property
    def trained_tokens(self) -> int:
        return sum(label != IGNORE_INDEX for label in self.labels)


def assistant_char_spans(tokenizer, messages: Sequence[dict]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the ``[start, end)`` character spans of its assistant answers."""
    text = tokenizer.apply_chat_template(list(messages), tokenize=False)
    spans: list[tuple[int, int]] = []
    for i, message in enumerate(messages):
        if message.get("role") != "assistant":
            continue
        if i == 0:
            raise InputError("conversation starts with an assistant turn; SFT needs a prompt before it")
        before = tokenizer.apply_chat_template(list(messages[:i]), tokenize=False, add_generation_prompt=True)
        through = tokenizer.apply_chat_template(list(messages[: i + 1]), tokenize=False)
        if not (text.startswith(before) and text.startswith(through) and through.startswith(before)):
            raise InputError(
                "the chat template does not render a conversation's prefix as a prefix of the whole, so the "
                "assistant tokens cannot be located; use a prefix-preserving template (e.g. Qwen2's ChatML)"
            )
        answer = through[len(before) :]
        spans.append((len(before), len(before) + len(answer.rstrip())))
    return text, spans


def tokenize_conversation(tokenizer, messages: Sequence[dict], max_len: int) -> SftExample:
    """Token ids of the rendered conversation (cut to ``max_len``) with labels on assistant tokens only."""
    text, spans = assistant_char_spans(tokenizer, messages)
    encoded = tokenizer(
        text, add_special_tokens=False, return_offsets_mapping=True, truncation=True, max_length=max_len
    )
    ids = encoded["input_ids"]
    labels = [IGNORE_INDEX] * len(ids)
    span_index = 0
    for t, (start, end) in enumerate(encoded["offset_mapping"]):
        while span_index < len(spans) and spans[span_index][1] <= start:
            span_index += 1
        if span_index < len(spans) and spans[span_index][0] <= start < spans[span_index][1] and end > start:
            labels[t] = ids[t]
    return SftExample(ids, labels)
