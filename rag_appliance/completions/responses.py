"""OpenAI text_completion bodies (whole and streamed) and the legacy logprobs object."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from typing import Any

from rag_appliance.chat.responses import usage
from rag_appliance.generation.base import TokenLogprob


def completion_id() -> str:
    """A fresh OpenAI-style legacy completion id."""
    return f"cmpl-{uuid.uuid4().hex}"


def text_choice(
    text: str,
    finish_reason: str | None,
    logprobs: dict[str, Any] | None = None,
    annotations: list[dict[str, Any]] | None = None,
    stop_reason: str | None = None,
) -> dict[str, Any]:
    """One choice; `annotations` (RAG) and `stop_reason` are extensions, as on chat."""
    choice: dict[str, Any] = {
        "text": text,
        "index": 0,
        "logprobs": logprobs,
        "finish_reason": finish_reason,
    }
    if annotations is not None:
        choice["annotations"] = annotations
    if stop_reason is not None:
        choice["stop_reason"] = stop_reason
    return choice


def text_completion(
    cid: str,
    model: str,
    choice: dict[str, Any] | None,
    tokens: tuple[int, int] | None = None,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A text_completion object (also each streamed chunk); `choice=None`: the usage chunk."""
    body: dict[str, Any] = {
        "id": cid,
        "object": "text_completion",
        "created": int(time.time()),
        "model": model,
        "choices": [] if choice is None else [choice],
    }
    if tokens is not None:
        body["usage"] = usage(*tokens)
    return body | (extra or {})


def legacy_logprobs(tokens: Sequence[TokenLogprob], offset: int = 0) -> dict[str, Any]:
    """OpenAI's legacy logprobs: tokens, their log-probabilities, alternatives, text offsets."""
    offsets: list[int] = []
    for t in tokens:
        offsets.append(offset)
        offset += len(t.token)
    return {
        "tokens": [t.token for t in tokens],
        "token_logprobs": [t.logprob for t in tokens],
        "top_logprobs": [dict(t.top) for t in tokens],
        "text_offset": offsets,
    }
