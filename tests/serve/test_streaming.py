"""Incremental detokenisation: clean text, held-back partial characters and stop strings."""

from __future__ import annotations

import pytest

from medgo.serve.streaming import REPLACEMENT, TextStream, clean_text


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    from medgo.modeling import load_tokenizer

    return load_tokenizer(str(tiny_model_dir))


def _byte_tokens(tokenizer, text: str) -> list[int]:
    """One token per UTF-8 byte, so every multi-byte character is split across tokens.

    Byte-level BPE gives each byte a printable stand-in character: printable Latin-1 bytes stand
    for themselves, the others map to 256, 257, ... in byte order (GPT-2's table).
    """
    printable = {*range(ord("!"), ord("~") + 1), *range(0xA1, 0xAD), *range(0xAE, 0x100)}
    stand_in, extra = {}, 0
    for byte in range(256):
        if byte in printable:
            stand_in[byte] = chr(byte)
        else:
            stand_in[byte] = chr(256 + extra)
            extra += 1
    vocab = tokenizer.get_vocab()
    return [vocab[stand_in[byte]] for byte in text.encode("utf-8")]


def test_clean_text_drops_replacement_and_control_characters_but_keeps_newlines_and_tabs():
    assert clean_text("血压\x1b[2J正常\ufffd\r\n\t。\x00\x85") == "血压[2J正常\n\t。"


def test_multibyte_characters_split_over_tokens_stream_without_replacement_characters(tokenizer):
    text = "患者男，65岁，头痛三天。"
    ids = _byte_tokens(tokenizer, text)
    assert len(ids) == len(text.encode()), "precondition: one token per byte"
    assert REPLACEMENT in tokenizer.decode(ids[:1]), "precondition: a lone byte decodes to U+FFFD"
    stream = TextStream(tokenizer)
    pieces = [stream.push(token) for token in ids]
    pieces.append(stream.finish())
    assert "".join(pieces) == text
    assert not any(REPLACEMENT in piece for piece in pieces)
    assert sum(1 for piece in pieces if piece) >= len(text) - 1, "text is released as characters complete"


def test_a_byte_sequence_that_never_completes_is_dropped(tokenizer):
    head = _byte_tokens(tokenizer, "头")[:2]  # two of three bytes, then plain ASCII
    stream = TextStream(tokenizer)
    text = "".join(stream.push(t) for t in [*head, *_byte_tokens(tokenizer, "ok")]) + stream.finish()
    assert text == "ok"
    truncated = TextStream(tokenizer)
    assert "".join(truncated.push(t) for t in head) + truncated.finish() == ""


def test_a_stop_string_is_never_streamed_even_in_part(tokenizer):
    text = "发热三天。建议就医"
    stream = TextStream(tokenizer, stop=["。建议"])
    pieces = []
    for token in _byte_tokens(tokenizer, text):
        pieces.append(stream.push(token))
        if stream.stopped:
            break
    pieces.append(stream.finish())
    assert stream.stopped
    assert "".join(pieces) == "发热三天" == stream.text
    assert not any("。" in piece for piece in pieces)


def test_held_back_stop_prefix_is_released_when_it_does_not_become_a_stop(tokenizer):
    stream = TextStream(tokenizer, stop=["。建议"])
    pieces = [stream.push(t) for t in _byte_tokens(tokenizer, "头痛。休息")]
    pieces.append(stream.finish())
    assert not stream.stopped
    assert "".join(pieces) == "头痛。休息"


def test_stop_strings_are_ignored_while_not_allowed(tokenizer):
    stream = TextStream(tokenizer, stop=["痛"])
    text = "".join(stream.push(token, stop_allowed=False) for token in _byte_tokens(tokenizer, "头痛"))
    assert not stream.stopped
    assert text + stream.finish() == "头痛"
