"""POST /v1/chat/completions: OpenAI-compatible, streamed or not, with optional retrieval."""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import AsyncIterator
from typing import Any

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from sse_starlette import EventSourceResponse

from rag_appliance.api.deps import ServicesDep, json_response
from rag_appliance.chat.citations import Attributed
from rag_appliance.chat.loopguard import GuardedDeltas
from rag_appliance.chat.protocol import ChatCompletionRequest
from rag_appliance.chat.responses import chunk_body, completion_body, completion_id, usage
from rag_appliance.chat.service import ChatService, PreparedChat
from rag_appliance.errors import AppError, EngineError
from rag_appliance.generation.base import Delta, TokenLogprob
from rag_appliance.protocol import generation as bodies
from rag_appliance.protocol.openapi import responses

router = APIRouter()
log = logging.getLogger(__name__)


@router.post(
    "/v1/chat/completions",
    response_model=None,
    responses=responses(
        bodies.ChatCompletion,
        404,
        409,
        429,
        503,
        description="The answer; with `stream: true` server-sent chat.completion.chunk events.",
        stream=bodies.ChatCompletionChunk,
    ),
)
async def chat_completions(
    body: ChatCompletionRequest, services: ServicesDep, request: Request
) -> Response:
    """Answer a conversation; with `rag` (or a RAG model alias), over retrieved passages."""
    started = time.perf_counter()
    params = body.to_params()
    chat = services.require_chat()
    model = chat.check_model(body.model)
    params = dataclasses.replace(params, rag=chat.retrieval(body.model, params.rag))
    params = chat.with_defaults(params, explicit=body.model_fields_set)
    prepared = await chat.prepare(params)
    # Request -> generation start (retrieval, packing, templating): benchmarks read it.
    timing = {"x-prepare-ms": f"{1000 * (time.perf_counter() - started):.2f}"}
    cid = completion_id()
    if params.user:
        log.info("chat completion %s for user %r", cid, params.user)
    deltas = chat.guarded_stream(prepared, cid)
    # Pull the first piece before answering: overload (429) and engine errors become a normal
    # HTTP error instead of a broken stream.
    # A stream that ends at once (nothing to say) is an empty answer, not an error.
    first = await anext(deltas, None) or Delta("", "stop", 0)
    services.metrics.observe_ttft(time.perf_counter() - started)
    extra = {"service_tier": "default"} if body.service_tier else {}
    reply = _Reply(chat, prepared, cid, model, extra, params.logprobs is not None)
    reply.base_url = str(request.base_url)  # citation URLs: absolute, as the client sees us
    reply.collection = params.rag.collection if params.rag else None
    if not body.stream:
        response = await reply.complete(first, deltas)
        response.headers.update(timing)
        return response
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    events = reply.events(first, deltas, include_usage)
    return EventSourceResponse(events, ping=15, sep="\n", headers=timing)


class _Reply:
    """One answer's bodies, whole or as SSE chunks."""

    def __init__(
        self,
        chat: ChatService,
        prepared: PreparedChat,
        cid: str,
        model: str,
        extra: dict[str, Any],
        logprobs: bool,
    ) -> None:
        self.chat, self.prepared, self.cid, self.model = chat, prepared, cid, model
        self.extra = extra
        self.logprobs = logprobs
        self.base_url = ""  # the request's, for absolute citation URLs
        self.collection: str | None = None

    async def complete(self, first: Delta, rest: GuardedDeltas) -> Response:
        """The whole chat.completion; a RAG answer with its citations."""
        parts = [first.text]
        tokens: list[TokenLogprob] = list(first.logprobs)
        last = first
        try:
            async for delta in rest:
                parts.append(delta.text)
                tokens += delta.logprobs
                last = delta
        finally:
            await _close(rest)
        sources = self.chat.sources(self.prepared)
        cited = await self._attribute("".join(parts), streamed=False)
        body = completion_body(
            self.cid,
            self.model,
            cited.text,
            last.finish_reason,
            len(self.prepared.prompt),
            last.completion_tokens,
            logprobs=tokens if self.logprobs else None,
            extra=self.extra | self.chat.extension(self.prepared),
            annotations=None if sources is None else cited.annotations,
            stop_reason=rest.stop_reason,
        )
        return json_response(body)

    async def _attribute(self, text: str, streamed: bool) -> Attributed:
        return await self.chat.attribute(
            self.prepared,
            text,
            base_url=self.base_url,
            collection=self.collection,
            streamed=streamed,
            request_id=self.cid,  # the search log's event id (feedback names it)
        )

    async def events(
        self, first: Delta, rest: GuardedDeltas, include_usage: bool
    ) -> AsyncIterator[dict[str, str]]:
        """SSE events: sources first, then content deltas, citations, finish, usage, [DONE].

        Markers the model did not write go in one last content delta after the answer, with
        the annotations (indexes into the joined content) on that delta.
        """
        cid, model = self.cid, self.model
        sources = self.chat.sources(self.prepared)
        opening = {"role": "assistant", "content": ""}
        yield _data(
            chunk_body(
                cid,
                model,
                opening,
                extra=self.extra | self.chat.extension(self.prepared),
            )
        )
        last = first
        try:
            delta: Delta | None = first
            while delta is not None:
                last = delta
                if delta.text or delta.logprobs:
                    logprobs = delta.logprobs if self.logprobs else None
                    content = {"content": delta.text}
                    yield _data(
                        chunk_body(cid, model, content, extra=self.extra, logprobs=logprobs)
                    )
                delta = await anext(rest, None)
            if sources is not None:
                cited = await self._attribute(rest.text, streamed=True)
                closing = {
                    "content": cited.text[len(rest.text) :],
                    "annotations": cited.annotations,
                }
                yield _data(chunk_body(cid, model, closing, extra=self.extra))
        except AppError as exc:
            yield _data(exc.body())
            return
        except Exception:  # never leak internals into the stream
            log.exception("chat stream failed")
            yield _data(EngineError("the generator failed while streaming").body())
            return
        finally:  # a client that hung up must not keep the engine generating
            await _close(rest)
        yield _data(
            chunk_body(
                cid,
                model,
                {},
                finish_reason=last.finish_reason,
                extra=self.extra,
                stop_reason=rest.stop_reason,
            )
        )
        if include_usage:
            extra = {"usage": usage(len(self.prepared.prompt), last.completion_tokens)}
            yield _data(chunk_body(cid, model, None, extra=self.extra | extra))
        yield {"data": "[DONE]"}


async def _close(deltas: AsyncIterator[Delta]) -> None:
    aclose = getattr(deltas, "aclose", None)
    if aclose is not None:
        await aclose()


def _data(body: dict[str, Any]) -> dict[str, str]:
    return {"data": orjson.dumps(body).decode()}
