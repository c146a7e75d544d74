"""One chat call as plain values, as the router and the UI hand it to the chat service."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rag_appliance.generation.base import Message, StructuredOutput
from rag_appliance.store.base import SearchMode


@dataclass(frozen=True)
class RetrievalOptions:
    """Retrieve-then-generate: where to search and how much to bring."""

    collection: str | None = None  # None: rag.default_collection
    top_k: int | None = None
    filter: dict[str, Any] | None = None
    score_threshold: float | None = None
    mode: SearchMode | None = None  # as /v1/search: None is the same default
    rerank: bool | None = None


@dataclass(frozen=True)
class ChatParams:
    """A chat request; None means "the configured default"."""

    messages: list[Message]
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: tuple[str, ...] = ()
    seed: int | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    repetition_penalty: float = 1.0
    logit_bias: dict[int, float] | None = None
    logprobs: int | None = None  # None: off; k: the chosen token plus k alternatives
    structured: StructuredOutput | None = None
    rag: RetrievalOptions | None = None
    user: str | None = None  # the end user's id, for the log
