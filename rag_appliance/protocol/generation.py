"""Models of the chat, completion and rerank bodies, for the OpenAPI document only."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

_SOURCES = Field(
    None, description="RAG answers: the retrieved passages, numbered as cited ([1], [2], ...)."
)
_RETRIEVAL = Field(None, description="RAG answers: what retrieval found and used.")


class CompletionUsage(BaseModel):
    """Token counts of a generation."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class ChatMessage(BaseModel):
    """The assistant's answer; `annotations`: url_citation objects of a RAG answer."""

    role: Literal["assistant"]
    content: str
    refusal: None
    annotations: list[dict[str, Any]] | None = None


class ChatChoice(BaseModel):
    """The one choice; `stop_reason` "repetition" when the loop guard ended the answer."""

    index: int
    message: ChatMessage
    logprobs: dict[str, Any] | None
    finish_reason: str | None
    stop_reason: str | None = None


class ChatCompletion(BaseModel):
    """POST /v1/chat/completions without `stream`."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[ChatChoice]
    usage: CompletionUsage
    sources: list[dict[str, Any]] | None = _SOURCES
    retrieval: dict[str, Any] | None = _RETRIEVAL


class ChunkChoice(BaseModel):
    """One streamed choice: a delta of the answer."""

    index: int
    delta: dict[str, Any]
    logprobs: dict[str, Any] | None
    finish_reason: str | None
    stop_reason: str | None = None


class ChatCompletionChunk(BaseModel):
    """One `data:` event of a streamed chat answer (the last is `data: [DONE]`).

    The first chunk opens the assistant message (with `sources` for RAG), content deltas
    follow, then a delta with the citations' `annotations` (RAG), the `finish_reason` chunk and,
    with stream_options.include_usage, a chunk with `usage` and no choices. An error mid-stream
    is one `{"error": {...}}` event, then the stream ends.
    """

    id: str
    object: Literal["chat.completion.chunk"]
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: CompletionUsage | None = None
    sources: list[dict[str, Any]] | None = _SOURCES
    retrieval: dict[str, Any] | None = _RETRIEVAL


class TextChoice(BaseModel):
    """One legacy completion choice (`annotations`: a RAG answer's citations)."""

    text: str
    index: int
    logprobs: dict[str, Any] | None
    finish_reason: str | None
    annotations: list[dict[str, Any]] | None = None
    stop_reason: str | None = None


class TextCompletion(BaseModel):
    """POST /v1/completions; also each streamed `data:` event (then without `usage`).

    Streamed: text deltas (the first with `sources` for RAG), the citations, a `finish_reason`
    choice, with stream_options.include_usage a chunk with `usage` and no choices, then
    `data: [DONE]`.
    """

    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: list[TextChoice]
    usage: CompletionUsage | None = None
    sources: list[dict[str, Any]] | None = _SOURCES
    retrieval: dict[str, Any] | None = _RETRIEVAL


class RerankDocument(BaseModel):
    """The ranked text, with return_documents."""

    text: str


class RerankItem(BaseModel):
    """One document's rank: its index in the request and its relevance score (0..1)."""

    index: int
    relevance_score: float
    document: RerankDocument | None = None


class RerankUsage(BaseModel):
    """Tokens the reranker read."""

    prompt_tokens: int
    total_tokens: int


class RerankResult(BaseModel):
    """POST /v1/rerank: results best first."""

    id: str
    model: str
    results: list[RerankItem]
    usage: RerankUsage
