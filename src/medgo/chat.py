"""The chat message shape every stage shares: SFT and preference records, evaluation prompts, serving.

TRL's conversational format and OpenAI's chat API agree on it: a list of ``{"role", "content"}``.
"""

from __future__ import annotations

from typing import Literal, TypedDict

Role = Literal["system", "user", "assistant"]


class Message(TypedDict):
    role: Role
    content: str


#: One conversation (or prompt), in order.
Messages = list[Message]
