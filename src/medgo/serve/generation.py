"""Request-side types shared by every serving protocol: chat messages, generation parameters, results.

KServe v1, v2 and the OpenAI-compatible route all end in the same generation call, so the rules
for what a client may ask for live here once. Validation failures raise KServe's
:class:`~kserve.errors.InvalidInput`, which every route turns into an HTTP 400. Error messages
name the offending field and the rule it broke, never the value: values may be patient text.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from kserve.errors import InvalidInput
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from medgo.chat import Message, Messages

#: At most this many stop sequences, as in the OpenAI API.
MAX_STOP_SEQUENCES = 4


class TextPart(BaseModel):
    """One part of an OpenAI multi-part message; only text parts can reach a text-only model."""

    model_config = ConfigDict(extra="ignore")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One chat turn. ``developer`` (OpenAI's newer name for system) is read as ``system``."""

    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[TextPart]

    def as_template_turn(self) -> Message:
        """The ``{"role", "content"}`` dict a chat template expects, parts joined into one string."""
        role = "system" if self.role == "developer" else self.role
        content = self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        return {"role": role, "content": content}


#: Seeds torch's generators accept (``torch.Generator.manual_seed``).
SEED_MIN, SEED_MAX = -(2**63), 2**64 - 1


class GenerationParams(BaseModel):
    """Sampling settings a request may set; ``None`` leaves a setting to the model's ``generation_config``.

        ``temperature=0`` asks for greedy decoding, a positive temperature or a ``top_p`` for sampling.
        ``max_tokens`` is further capped by the server's ``max_new_tokens`` (checked by the model,
        which knows the cap). ``top_k`` and ``repetition_penalty`` are the vLLM extensions of the
        OpenAI API (``top_k`` 0 or -1 is off), as is ``min_tokens`` (end-of-sequence and stop strings
    are ignored until that many tokens exist); ``presence_penalty`` and ``frequency_penalty`` follow
        OpenAI's definition (subtracted from the logits of tokens already generated).
    """

    model_config = ConfigDict(extra="forbid")

    max_tokens: int | None = Field(None, ge=1)
    min_tokens: int | None = Field(None, ge=0)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    top_k: int | None = Field(None, ge=-1)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    repetition_penalty: float | None = Field(None, gt=0.0, le=2.0)
    stop: list[Annotated[str, StringConstraints(min_length=1)]] | None = Field(
        None, max_length=MAX_STOP_SEQUENCES
    )
    seed: int | None = Field(None, ge=SEED_MIN, le=SEED_MAX)

    @field_validator("stop", mode="before")
    @classmethod
    def _single_stop_as_list(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


@dataclass(frozen=True)
class Usage:
    """Token counts of one completion, as OpenAI reports them."""

    prompt_tokens: int
    completion_tokens: int

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class Completion:
    """One generated answer: its text, why generation ended (``stop`` or ``length``) and its token counts."""

    text: str
    finish_reason: Literal["stop", "length"]
    usage: Usage


def describe_validation_error(exc: ValidationError, *, where: str = "") -> str:
    """``"parameters.temperature: Input should be less than or equal to 2"``.

    Locations and rules only, never the offending values: those may be patient text.
    """
    problems = []
    for err in exc.errors(include_url=False, include_input=False, include_context=False):
        location = where
        for part in err["loc"]:
            location += f"[{part}]" if isinstance(part, int) else (f".{part}" if location else str(part))
        message = "unknown parameter" if err["type"] == "extra_forbidden" else err["msg"]
        problems.append(f"{location}: {message}" if location else message)
    return "; ".join(problems)


def parse_generation_params(raw: Mapping[str, Any] | None, *, where: str = "parameters") -> GenerationParams:
    """Validate client-supplied generation settings; raises :class:`InvalidInput` (HTTP 400)."""
    if raw is None:
        return GenerationParams()
    if not isinstance(raw, Mapping):
        raise InvalidInput(f"{where} must be a JSON object")
    try:
        return GenerationParams.model_validate(dict(raw))
    except ValidationError as exc:
        raise InvalidInput(describe_validation_error(exc, where=where)) from None


def parse_messages(raw: Any, *, where: str = "messages") -> Messages:
    """Validate a chat (a non-empty list of turns) and return it as chat-template turns."""
    if not isinstance(raw, Sequence) or isinstance(raw, str | bytes) or not raw:
        raise InvalidInput(f"{where} must be a non-empty list of chat messages")
    turns = []
    for index, item in enumerate(raw):
        try:
            turns.append(ChatMessage.model_validate(item).as_template_turn())
        except ValidationError as exc:
            raise InvalidInput(describe_validation_error(exc, where=f"{where}[{index}]")) from None
    return turns
