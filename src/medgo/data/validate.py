"""Field checks and text cleaning shared by the record builders; failures become quarantine reasons.

Reasons are short machine-readable strings (``missing_field:text``, ``wrong_type:id``,
``empty_field:answer``) so they aggregate into a histogram in the data card.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from medgo.config import ScrubbingConfig
from medgo.data.normalize import normalize_text
from medgo.data.pii import DEFAULT_RECORD_NUMBER_PREFIXES, scrub_pii


class RecordError(ValueError):
    """A record cannot be used; ``reason`` is its quarantine reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def require_str(data: dict[str, Any], name: str) -> str:
    """The non-blank string ``data[name]``, else :class:`RecordError`."""
    value = optional_str(data, name)
    if value is None:
        raise RecordError(f"missing_field:{name}")
    return value


def optional_str(data: dict[str, Any], name: str) -> str | None:
    """``data[name]`` if it is a non-blank string, None if absent or null; other types are errors."""
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise RecordError(f"wrong_type:{name}")
    if not value.strip():
        raise RecordError(f"empty_field:{name}")
    return value


def record_id(data: dict[str, Any], source: str, line: int) -> str:
    """The record's own string ``id``, or a stable one derived from where it was read.

    The derived id depends only on the file's path relative to the input root and the line
    number, so re-running a stage on the same files gives the same ids.
    """
    value = data.get("id")
    if value is None:
        return "auto-" + hashlib.sha1(f"{source}:{line}".encode()).hexdigest()[:16]
    if not isinstance(value, str):
        raise RecordError("wrong_type:id")
    if not value.strip():
        raise RecordError("empty_field:id")
    return value


def record_number_prefixes(config: ScrubbingConfig) -> tuple[str, ...]:
    """The record-number labels a stage masks after: its configured ones, else the built-in list."""
    if config.record_number_prefixes is None:
        return DEFAULT_RECORD_NUMBER_PREFIXES
    return tuple(config.record_number_prefixes)


@dataclass
class TextCleaner:
    """Normalise and scrub each text that goes into a conversation, counting masked identifiers.

    Chat records (SFT, preferences) get the same treatment as the pretraining corpus, and a
    text that cleans down to nothing is a record error.
    """

    scrub: bool = True
    prefixes: Sequence[str] = DEFAULT_RECORD_NUMBER_PREFIXES
    pii: Counter = field(default_factory=Counter)

    @classmethod
    def for_config(cls, config: ScrubbingConfig) -> TextCleaner:
        return cls(scrub=config.scrub_pii, prefixes=record_number_prefixes(config))

    def __call__(self, text: str, name: str) -> str:
        cleaned = normalize_text(text)
        if self.scrub:
            cleaned, found = scrub_pii(cleaned, record_number_prefixes=self.prefixes)
            self.pii.update(found)
        if not cleaned:
            raise RecordError(f"empty_field:{name}")
        return cleaned

    def required(self, data: dict[str, Any], name: str) -> str:
        """The cleaned required string field ``name``."""
        return self(require_str(data, name), name)

    def optional(self, data: dict[str, Any], name: str) -> str | None:
        """The cleaned string field ``name``, or None when absent."""
        value = optional_str(data, name)
        return None if value is None else self(value, name)
