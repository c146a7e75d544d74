"""OpenAI chat.completion and chat.completion.chunk bodies."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from rag_appliance.generation.base import TokenLogprob


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
    logprobs: Sequence[TokenLogprob] | None = None,
    extra: dict[str, Any] | None = None,
    annotations: list[dict[str, Any]] | None = None,
    stop_reason: str | None = None,
) -> dict[str, Any]:
    """A non-streamed chat.completion; `logprobs=None` when they were not asked for.

    `annotations` (RAG answers): OpenAI's url_citation list on the message; `stop_reason`:
    vLLM's extension on the choice, here "repetition" when the loop guard ended the answer.
    """
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if annotations is not None:
        message["annotations"] = annotations
    choice: dict[str, Any] = {
        "index": 0,
        "message": message,
        "logprobs": None if logprobs is None else logprobs_body(logprobs),
        "finish_reason": finish_reason,
    }
    if stop_reason is not None:
        choice["stop_reason"] = stop_reason
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
        "usage": usage(prompt_tokens, completion_tokens),
    }
    return body | (extra or {})


def chunk_body(
    cid: str,
    model: str,
    delta: dict[str, Any] | None,
    finish_reason: str | None = None,
    extra: dict[str, Any] | None = None,
    logprobs: Sequence[TokenLogprob] | None = None,
    stop_reason: str | None = None,
) -> dict[str, Any]:
    """One chat.completion.chunk; `delta=None` is the usage-only chunk (no choices)."""
    choice: dict[str, Any] = {
        "index": 0,
        "delta": delta,
        "logprobs": None if logprobs is None else logprobs_body(logprobs),
        "finish_reason": finish_reason,
    }
    if stop_reason is not None:
        choice["stop_reason"] = stop_reason
    body: dict[str, Any] = {
        "id": cid,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [] if delta is None else [choice],
    }
    return body | (extra or {})


def logprobs_body(tokens: Sequence[TokenLogprob]) -> dict[str, Any]:
    """OpenAI's choice.logprobs: per token its text, log-probability, bytes and alternatives."""
    return {
        "content": [
            {
                **_token(t.token, t.logprob),
                "top_logprobs": [_token(text, value) for text, value in t.top],
            }
            for t in tokens
        ],
        "refusal": None,
    }


def _token(text: str, logprob: float) -> dict[str, Any]:
    return {"token": text, "logprob": logprob, "bytes": list(text.encode("utf-8", "replace"))}


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """OpenAI's usage object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }
