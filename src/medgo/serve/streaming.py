"""Generated token ids → clean answer text, released piece by piece as generation goes.

Byte-level BPE tokens can end in the middle of a multi-byte UTF-8 character (most Chinese
characters are three bytes), so decoding each token on its own shows U+FFFD until the rest of
the character arrives. :class:`TextStream` holds such a tail back until it completes, drops the
replacement characters of byte sequences that never complete, strips control characters other
than tab and newline (a model can emit ``\\x1b`` sequences that rewrite a terminal), and holds
back a tail that could still become a stop string, so a stream never shows part of one.
"""

from __future__ import annotations

from collections.abc import Sequence

REPLACEMENT = "\ufffd"
#: Longest UTF-8 encoding of one character: a tail still undecodable after this many more tokens never will be.
_MAX_HELD_TOKENS = 4
#: Tokens re-decoded before the unreleased ones, so tokenizers that render a token by its context
#: (SentencePiece's leading space) decode the same text incrementally as at once.
_CONTEXT_TOKENS = 5

_KEPT_CONTROLS = {"\n", "\t"}


def clean_text(text: str) -> str:
    """``text`` without U+FFFD and without control characters other than newline and tab."""
    return "".join(
        ch
        for ch in text
        if ch != REPLACEMENT and (ch in _KEPT_CONTROLS or not (ord(ch) < 0x20 or 0x7F <= ord(ch) < 0xA0))
    )


class TextStream:
    """Incremental detokenisation of one answer with stop-string handling.

    ``push(token_id)`` returns the text that became final with that token ("" while a tail is
    held back); ``finish()`` returns the rest once generation has ended. After a stop string was
    found, :attr:`stopped` is true and the text ends before it (the stop string is not part of the
    answer, as in OpenAI's API).
    """

    def __init__(self, tokenizer, stop: Sequence[str] = ()) -> None:
        self._tokenizer = tokenizer
        self._stop = [s for s in stop if s]
        self._longest_stop = max((len(s) for s in self._stop), default=0)
        self._ids: list[int] = []
        self._prefix_offset = 0
        self._read_offset = 0
        self._text = ""
        self._released = 0
        self._stop_allowed = True
        self.stopped = False

    @property
    def text(self) -> str:
        """The answer's text so far, released or not."""
        return self._text

    def push(self, token_id: int, *, stop_allowed: bool = True) -> str:
        """Add one generated token; ``stop_allowed=False`` (before ``min_tokens``) ignores stop strings."""
        if self.stopped:
            return ""
        self._stop_allowed = stop_allowed
        self._ids.append(token_id)
        decode = self._tokenizer.decode
        before = decode(self._ids[self._prefix_offset : self._read_offset], skip_special_tokens=True)
        after = decode(self._ids[self._prefix_offset :], skip_special_tokens=True)
        if after.endswith(REPLACEMENT) and len(self._ids) - self._read_offset < _MAX_HELD_TOKENS:
            return ""
        if after.startswith(before):
            self._append(after[len(before) :])
        else:  # rare: context changed earlier text; take the unread tokens decoded on their own
            self._append(decode(self._ids[self._read_offset :], skip_special_tokens=True))
        self._advance()
        return self._release()

    def finish(self) -> str:
        """The held-back text once no more tokens come (an incomplete character is dropped)."""
        if not self.stopped and self._read_offset < len(self._ids):
            self._append(self._tokenizer.decode(self._ids[self._read_offset :], skip_special_tokens=True))
            self._read_offset = len(self._ids)
        if self.stopped:
            return self._release()
        rest = self._text[self._released :]
        self._released = len(self._text)
        return rest

    def _advance(self) -> None:
        self._read_offset = len(self._ids)
        self._prefix_offset = max(0, self._read_offset - _CONTEXT_TOKENS)

    def _append(self, piece: str) -> None:
        piece = clean_text(piece)
        if not piece:
            return
        search_from = max(0, len(self._text) - self._longest_stop + 1)
        self._text += piece
        if not self._stop or not self._stop_allowed:
            return
        hits = [i for i in (self._text.find(s, search_from) for s in self._stop) if i >= 0]
        if hits:
            self._text = self._text[: min(hits)]
            self.stopped = True

    def _release(self) -> str:
        end = len(self._text) if self.stopped else len(self._text) - self._stop_prefix_tail()
        end = max(end, self._released)
        piece = self._text[self._released : end]
        self._released = end
        return piece

    def _stop_prefix_tail(self) -> int:
        """Length of the longest end of the text that is the start of a stop string."""
        for length in range(min(self._longest_stop - 1, len(self._text)), 0, -1):
            tail = self._text[-length:]
            if any(s.startswith(tail) for s in self._stop):
                return length
        return 0
