"""Chat with or without retrieval; shared by the chat route and the UI."""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from rag_appliance.errors import InvalidRequest, ModelNotFound, ServiceUnavailable
from rag_appliance.generation.base import Delta, Generator, Message, SamplingParams
from rag_appliance.rag.prompt import last_user_text, pack, with_context
from rag_appliance.rag.retriever import Retriever, SearchHit
from rag_appliance.settings import GenerationSettings, RagSettings

# Tokens kept free beside the prompt when the request does not say how long to answer.
_MIN_ANSWER = 16


@dataclass(frozen=True)
class ChatParams:
    """One chat call as plain values."""

    messages: list[Message]
    max_tokens: int | None
    temperature: float | None
    top_p: float | None
    stop: tuple[str, ...]
    seed: int | None
    rag: dict[str, Any] | None  # {"collection", "top_k", "filter", "score_threshold"} or None


@dataclass(frozen=True)
class PreparedChat:
    """What goes to the engine, and the sources behind it (None: plain chat)."""

    prompt: list[int]
    sampling: SamplingParams
    messages: list[Message]
    sources: list[SearchHit] | None


class ChatService:
    """Retrieve (optionally), pack, template, check the context and stream the answer."""

    def __init__(
        self,
        generator: Generator,
        retriever: Retriever | None,
        settings: GenerationSettings,
        rag: RagSettings,
    ) -> None:
        self.generator = generator
        self.retriever = retriever
        self.settings = settings
        self.rag = rag
        self.served_name = generator.info.model
        self.names = {self.served_name, *settings.aliases}
        self.recorded: collections.deque[PreparedChat] = collections.deque(
            maxlen=settings.record_prompts or 1
        )

    def check_model(self, name: str | None) -> str:
        """The served name for a requested chat model, or a 404 model_not_found."""
        if name is None or name in self.names:
            return self.served_name
        raise ModelNotFound(
            f"The model '{name}' does not exist or is not a chat model; chat models here: "
            + ", ".join(sorted(self.names)),
            param="model",
        )

    def rag_options(
        self, model: str | None, requested: dict[str, Any] | None
    ) -> dict[str, Any] | None:
        """Retrieval options: the request's `rag`, or the default collection for the 'rag' alias."""
        default = self.rag.default_collection
        if requested is not None:
            options = dict(requested)
            options["collection"] = options.get("collection") or default
            if not options["collection"]:
                raise InvalidRequest(
                    "'rag.collection' is required (no rag.default_collection is configured)",
                    param="rag.collection",
                )
            return options
        if model == "rag":
            if not default:
                raise InvalidRequest(
                    "model 'rag' needs rag.default_collection configured, or send"
                    " 'rag': {\"collection\": ...}",
                    param="model",
                )
            return {"collection": default}
        return None

    async def prepare(self, params: ChatParams) -> PreparedChat:
        """Retrieve and pack context, render the prompt, and check it against the context."""
        gen = self.generator
        limit = gen.info.max_model_len
        messages = params.messages
        sources: list[SearchHit] | None = None
        if params.rag is not None:
            messages, sources = await self._with_retrieval(params, limit)
        prompt = gen.chat_prompt(messages)
        room = limit - len(prompt)
        if params.max_tokens is not None and params.max_tokens > room:
            raise InvalidRequest(
                f"This model's maximum context length is {limit} tokens. However, you requested "
                f"{len(prompt) + params.max_tokens} tokens ({len(prompt)} in the messages, "
                f"{params.max_tokens} in the completion). Please reduce the length of the "
                "messages or completion.",
                param="messages",
                code="context_length_exceeded",
            )
        if room < 1:
            raise InvalidRequest(
                f"This model's maximum context length is {limit} tokens; the messages alone "
                f"take {len(prompt)}.",
                param="messages",
                code="context_length_exceeded",
            )
        sampling = SamplingParams(
            max_tokens=params.max_tokens or min(self.settings.max_tokens, room),
            temperature=self.settings.temperature
            if params.temperature is None
            else params.temperature,
            top_p=self.settings.top_p if params.top_p is None else params.top_p,
            stop=params.stop,
            seed=params.seed,
        )
        prepared = PreparedChat(prompt, sampling, messages, sources)
        if self.settings.record_prompts:
            self.recorded.append(prepared)
        return prepared

    async def _with_retrieval(
        self, params: ChatParams, limit: int
    ) -> tuple[list[Message], list[SearchHit]]:
        if self.retriever is None:
            raise ServiceUnavailable("retrieval needs a vector store; none is configured")
        options = params.rag or {}
        question = last_user_text(params.messages)
        if not question:
            raise InvalidRequest("retrieval needs a user message with text", param="messages")
        hits = await self.retriever.search(
            options["collection"],
            question,
            options.get("top_k") or self.rag.top_k,
            options.get("filter"),
            options.get("score_threshold"),
            param_prefix="rag.",
        )
        conversation = len(self.generator.chat_prompt(params.messages))
        answer = params.max_tokens or min(self.settings.max_tokens, max(_MIN_ANSWER, limit // 4))
        budget = min(int(limit * self.rag.context_share), limit - conversation - answer)
        packed = pack(hits, max(budget, 0), self.generator.count_tokens)
        return with_context(params.messages, packed.system_text), packed.hits

    def stream(self, prepared: PreparedChat, request_id: str) -> AsyncIterator[Delta]:
        """The engine's deltas for a prepared chat."""
        return self.generator.stream(prepared.prompt, prepared.sampling, request_id)

    def sources(self, prepared: PreparedChat) -> list[dict[str, Any]] | None:
        """The `sources` extension array, numbered as cited in the prompt."""
        if prepared.sources is None:
            return None
        snippet = self.rag.snippet_chars
        return [
            {
                "index": n,
                "doc_id": hit.doc_id,
                "chunk_index": hit.chunk_index,
                "score": hit.score,
                "text": hit.text[:snippet],
                "metadata": hit.metadata,
                "source": hit.source,
            }
            for n, hit in enumerate(prepared.sources, 1)
        ]
