"""POST /v1/chat/completions: OpenAI-compatible, streamed or not, with optional retrieval."""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter
from fastapi.responses import Response
from sse_starlette import EventSourceResponse

from rag_appliance.api.deps import ServicesDep, json_response
from rag_appliance.errors import AppError, EngineError
from rag_appliance.generation.base import Delta
from rag_appliance.protocol.chat import (
    ChatCompletionRequest,
    chunk_body,
    completion_body,
    completion_id,
    usage,
)
from rag_appliance.rag.service import ChatParams, ChatService, PreparedChat

router = APIRouter()
log = logging.getLogger(__name__)


@router.post("/v1/chat/completions", response_model=None)
async def chat_completions(body: ChatCompletionRequest, services: ServicesDep) -> Response:
    """Answer a conversation; with `rag` (or model 'rag'), over retrieved passages."""
    started = time.perf_counter()
    chat = services.require_chat()
    model = chat.check_model(body.model)
    rag = chat.rag_options(body.model, body.rag.model_dump(exclude_none=True) if body.rag else None)
    params = ChatParams(
        messages=body.plain_messages(),
        max_tokens=body.requested_max_tokens(),
        temperature=body.temperature,
        top_p=body.top_p,
        stop=body.stops(),
        seed=body.seed,
        rag=rag,
    )
    prepared = await chat.prepare(params)
    # Request -> generation start (retrieval, packing, templating): benchmarks read it.
    timing = {"x-prepare-ms": f"{1000 * (time.perf_counter() - started):.2f}"}
    cid = completion_id()
    deltas = chat.stream(prepared, cid)
    # Pull the first piece before answering: overload (429) and engine errors become a normal
    # HTTP error instead of a broken stream.
    # A stream that ends at once (nothing to say) is an empty answer, not an error.
    first = await anext(deltas, None) or Delta("", "stop", 0)
    if not body.stream:
        response = await _complete(chat, prepared, cid, model, first, deltas)
        response.headers.update(timing)
        return response
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    events = _events(chat, prepared, cid, model, first, deltas, include_usage)
    return EventSourceResponse(events, ping=15, sep="\n", headers=timing)


async def _complete(
    chat: ChatService,
    prepared: PreparedChat,
    cid: str,
    model: str,
    first: Delta,
    rest: AsyncIterator[Delta],
) -> Response:
    parts = [first.text]
    last = first
    try:
        async for delta in rest:
            parts.append(delta.text)
            last = delta
    finally:
        await _close(rest)
    body = completion_body(
        cid,
        model,
        "".join(parts),
        last.finish_reason,
        len(prepared.prompt),
        last.completion_tokens,
        chat.sources(prepared),
    )
    return json_response(body)


async def _events(
    chat: ChatService,
    prepared: PreparedChat,
    cid: str,
    model: str,
    first: Delta,
    rest: AsyncIterator[Delta],
    include_usage: bool,
) -> AsyncIterator[dict[str, str]]:
    sources = chat.sources(prepared)
    opening = chunk_body(
        cid,
        model,
        {"role": "assistant", "content": ""},
        extra=None if sources is None else {"sources": sources},
    )
    yield _data(opening)
    last = first
    try:
        delta: Delta | None = first
        while delta is not None:
            last = delta
            if delta.text:
                yield _data(chunk_body(cid, model, {"content": delta.text}))
            delta = await anext(rest, None)
    except AppError as exc:
        yield _data(exc.body())
        return
    except Exception:  # never leak internals into the stream
        log.exception("chat stream failed")
        yield _data(EngineError("the generator failed while streaming").body())
        return
    finally:  # a client that hung up must not keep the engine generating
        await _close(rest)
    yield _data(chunk_body(cid, model, {}, finish_reason=last.finish_reason))
    if include_usage:
        extra = {"usage": usage(len(prepared.prompt), last.completion_tokens)}
        yield _data(chunk_body(cid, model, None, extra=extra))
    yield {"data": "[DONE]"}


async def _close(deltas: AsyncIterator[Delta]) -> None:
    aclose = getattr(deltas, "aclose", None)
    if aclose is not None:
        await aclose()


def _data(body: dict[str, Any]) -> dict[str, str]:
    return {"data": orjson.dumps(body).decode()}
