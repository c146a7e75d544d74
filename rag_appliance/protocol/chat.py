"""OpenAI /v1/chat/completions request and response models (plus the `rag` extension)."""

from __future__ import annotations

import time
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictStr, model_validator

from rag_appliance.generation.base import Message


class TextPart(BaseModel):
    """A text content part; other part types (images, audio) are not supported."""

    type: Literal["text"]
    text: str


class ChatMessageIn(BaseModel):
    """One message of the conversation."""

    model_config = ConfigDict(extra="allow")

    role: Literal["system", "developer", "user", "assistant"]
    content: StrictStr | list[TextPart] | None = None
    name: str | None = None

    def text(self) -> str:
        """The content as plain text."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    """Streaming options."""

    include_usage: bool = False


class RagOptions(BaseModel):
    """Extension: retrieve from a collection before generating."""

    model_config = ConfigDict(extra="forbid")

    collection: str | None = Field(
        None, min_length=1, description="Collection to search (default: rag.default_collection)."
    )
    top_k: int | None = Field(None, ge=1, le=50, description="Chunks to retrieve.")
    filter: dict[str, Any] | None = Field(None, description="Metadata filter, as /v1/search.")
    score_threshold: float | None = Field(None, description="Drop chunks scoring below this.")


class ChatCompletionRequest(BaseModel):
    """The body of POST /v1/chat/completions, in the order of the OpenAI docs."""

    model_config = ConfigDict(extra="allow")

    messages: list[ChatMessageIn] = Field(min_length=1)
    model: str | None = None
    frequency_penalty: float | None = None
    max_completion_tokens: int | None = Field(None, ge=1)
    max_tokens: int | None = Field(None, ge=1)
    n: int | None = None
    presence_penalty: float | None = None
    seed: int | None = None
    stop: StrictStr | list[StrictStr] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    user: str | None = None
    rag: RagOptions | None = Field(
        None, description="Extension: retrieve-then-generate over a collection."
    )

    @model_validator(mode="after")
    def _check(self) -> ChatCompletionRequest:
        if self.n not in (None, 1):
            raise ValueError("only n=1 is supported")
        stops = [self.stop] if isinstance(self.stop, str) else (self.stop or [])
        if len(stops) > 4 or any(not s for s in stops):
            raise ValueError("'stop' takes up to 4 non-empty strings")
        return self

    def plain_messages(self) -> list[Message]:
        """Messages as plain role/content pairs ('developer' is a system message)."""
        return [
            Message(role="system" if m.role == "developer" else m.role, content=m.text())
            for m in self.messages
        ]

    def stops(self) -> tuple[str, ...]:
        """The stop strings as a tuple."""
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop or ())

    def requested_max_tokens(self) -> int | None:
        """max_completion_tokens, else the legacy max_tokens."""
        return self.max_completion_tokens or self.max_tokens


def completion_id() -> str:
    """A fresh OpenAI-style completion id."""
    return f"chatcmpl-{uuid.uuid4().hex}"


def completion_body(
    cid: str,
    model: str,
    text: str,
    finish_reason: str | None,
    prompt_tokens: int,
    completion_tokens: int,
    sources: list[dict[str, Any]] | None,
) -> dict[str, Any]:
    """A non-streamed chat.completion."""
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": None,
                "finish_reason": finish_reason,
            }
        ],
        "usage": usage(prompt_tokens, completion_tokens),
    }
    if sources is not None:
        body["sources"] = sources
    return body


def chunk_body(
    cid: str,
    model: str,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """One chat.completion.chunk; `delta=None` is the usage-only chunk (no choices)."""
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": []
        if delta is None
        else [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }
    return body | (extra or {})


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """OpenAI's usage object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
