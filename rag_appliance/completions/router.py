"""POST /v1/completions: legacy text completions, streamed or not; model `rag` cites like chat.

A plain model completes the raw prompt (no chat template). A RAG alias (rag.model_aliases)
treats the prompt as the user's question through the chat service: the same retrieval,
prompt, loop guard, citation filter and attribution as /v1/chat/completions.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import logging
from collections.abc import AsyncIterator
from typing import Any, Protocol

import orjson
from fastapi import APIRouter, Request
from fastapi.responses import Response
from sse_starlette import EventSourceResponse

from rag_appliance.api.deps import ServicesDep, json_response
from rag_appliance.chat.citations import Attributed
from rag_appliance.chat.loopguard import GuardedDeltas
from rag_appliance.chat.service import ChatService, PreparedChat
from rag_appliance.completions.protocol import CompletionParams, CompletionRequest
from rag_appliance.completions.responses import (
    completion_id,
    legacy_logprobs,
    text_choice,
    text_completion,
)
from rag_appliance.errors import AppError, EngineError, InvalidRequest
from rag_appliance.generation.base import Delta, Generator
from rag_appliance.protocol import generation as bodies
from rag_appliance.protocol.openapi import responses

router = APIRouter()
log = logging.getLogger(__name__)


class PromptTokenizer(Protocol):
    """Text -> the chat model's token ids, and the size of its vocabulary."""

    vocab_size: int

    def tokenize(self, text: str) -> list[int]: ...


@router.post(
    "/v1/completions",
    response_model=None,
    responses=responses(
        bodies.TextCompletion,
        404,
        409,
        429,
        503,
        description="The completion; with `stream: true` server-sent text_completion events.",
        stream=bodies.TextCompletion,
    ),
)
async def completions(body: CompletionRequest, services: ServicesDep, request: Request) -> Response:
    """Complete a prompt; with a RAG model alias (or `rag`), answer it over retrieved passages."""
    completion = body.to_params()
    chat = services.require_chat()
    model = chat.check_model(body.model)
    prepared = await _prepare(chat, body, completion)
    cid = completion_id()
    if completion.chat.user:
        log.info("completion %s for user %r", cid, completion.chat.user)
    deltas = chat.guarded_stream(prepared, cid)
    # The first piece before answering: overload and engine errors become HTTP errors.
    first = await anext(deltas, None) or Delta("", "stop", 0)
    reply = _Reply(chat, prepared, cid, model, completion.chat.logprobs is not None)
    reply.base_url = str(request.base_url)
    reply.collection = completion.chat.rag.collection if completion.chat.rag else None
    if not body.stream:
        return await reply.complete(first, deltas)
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    return EventSourceResponse(reply.events(first, deltas, include_usage), ping=15, sep="\n")


async def _prepare(
    chat: ChatService, body: CompletionRequest, completion: CompletionParams
) -> PreparedChat:
    params = completion.chat
    rag = chat.retrieval(body.model, params.rag)
    try:
        if rag is not None:
            if completion.text is None:
                raise InvalidRequest(
                    "retrieval needs the prompt as text, not token ids", param="prompt"
                )
            params = chat.with_defaults(
                dataclasses.replace(params, rag=rag), explicit=body.model_fields_set
            )
            return await chat.prepare(params)
        tokenizer = await tokenizer_for(chat.generator)
        ids = completion.token_ids
        if ids is None:
            ids = await asyncio.to_thread(tokenizer.tokenize, completion.text or "")
        bad = next((i for i in ids if i >= tokenizer.vocab_size), None)
        if bad is not None:
            raise InvalidRequest(
                f"'prompt' has token id {bad}, outside this model's vocabulary "
                f"(0..{tokenizer.vocab_size - 1})",
                param="prompt",
            )
        return chat.prepare_raw(params, ids)
    except AppError as exc:
        if exc.param and exc.param.startswith("messages"):  # the prompt is the one message
            exc.param = "prompt"
        raise


async def tokenizer_for(generator: Generator) -> PromptTokenizer:
    """The generator's own tokenizer when it offers one, else its model's, loaded once."""
    if hasattr(generator, "tokenize") and hasattr(generator, "vocab_size"):
        return generator  # type: ignore[return-value]
    # The Generator protocol has no raw tokenisation: load the same files it serves.
    return await asyncio.to_thread(_hf_tokenizer, generator.info.source)


@dataclasses.dataclass
class _HfTokenizer:
    tokenizer: Any
    vocab_size: int

    def tokenize(self, text: str) -> list[int]:
        # As vLLM's own /v1/completions: the tokenizer's default special tokens.
        return [int(i) for i in self.tokenizer.encode(text)]


@functools.lru_cache(maxsize=4)
def _hf_tokenizer(source: str) -> _HfTokenizer:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source)
    return _HfTokenizer(tokenizer, len(tokenizer))


class _Reply:
    """One completion's bodies, whole or as SSE chunks."""

    def __init__(
        self, chat: ChatService, prepared: PreparedChat, cid: str, model: str, logprobs: bool
    ) -> None:
        self.chat, self.prepared, self.cid, self.model = chat, prepared, cid, model
        self.logprobs = logprobs
        self.base_url = ""
        self.collection: str | None = None
        self.extra: dict[str, Any] = chat.extension(prepared)

    async def complete(self, first: Delta, rest: GuardedDeltas) -> Response:
        """The whole text_completion; a RAG answer with its citations."""
        parts, tokens, last = [first.text], list(first.logprobs), first
        try:
            async for delta in rest:
                parts.append(delta.text)
                tokens += delta.logprobs
                last = delta
        finally:
            await rest.aclose()
        rag = self.prepared.sources is not None
        cited = await self._attribute("".join(parts), streamed=False)
        choice = text_choice(
            cited.text,
            last.finish_reason,
            legacy_logprobs(tokens) if self.logprobs else None,
            annotations=cited.annotations if rag else None,
            stop_reason=rest.stop_reason,
        )
        counts = (len(self.prepared.prompt), last.completion_tokens)
        return json_response(text_completion(self.cid, self.model, choice, counts, self.extra))

    async def events(
        self, first: Delta, rest: GuardedDeltas, include_usage: bool
    ) -> AsyncIterator[dict[str, str]]:
        """SSE chunks: text deltas (sources on the first), citations, finish, usage, [DONE]."""
        cid, model = self.cid, self.model
        extra, last, offset = self.extra, first, 0
        try:
            delta: Delta | None = first
            while delta is not None:
                last = delta
                if delta.text or delta.logprobs or extra:
                    logprobs = legacy_logprobs(delta.logprobs, offset) if self.logprobs else None
                    offset += len(delta.text)
                    choice = text_choice(delta.text, None, logprobs)
                    yield _data(text_completion(cid, model, choice, extra=extra))
                    extra = {}
                delta = await anext(rest, None)
            if self.prepared.sources is not None:
                cited = await self._attribute(rest.text, streamed=True)
                added = cited.text[len(rest.text) :]
                if added or cited.annotations:
                    choice = text_choice(added, None, annotations=cited.annotations)
                    yield _data(text_completion(cid, model, choice))
        except AppError as exc:
            yield _data(exc.body())
            return
        except Exception:  # never leak internals into the stream
            log.exception("completion stream failed")
            yield _data(EngineError("the generator failed while streaming").body())
            return
        finally:  # a client that hung up must not keep the engine generating
            await rest.aclose()
        finish = text_choice("", last.finish_reason, stop_reason=rest.stop_reason)
        yield _data(text_completion(cid, model, finish))
        if include_usage:
            counts = (len(self.prepared.prompt), last.completion_tokens)
            yield _data(text_completion(cid, model, None, counts))
        yield {"data": "[DONE]"}

    async def _attribute(self, text: str, streamed: bool) -> Attributed:
        return await self.chat.attribute(
            self.prepared,
            text,
            base_url=self.base_url,
            collection=self.collection,
            streamed=streamed,
        )


def _data(body: dict[str, Any]) -> dict[str, str]:
    return {"data": orjson.dumps(body).decode()}
