"""Chat with or without retrieval; shared by the chat route and the UI."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from rag_appliance.chat.budget import TokenBudget
from rag_appliance.chat.params import ChatParams, RetrievalOptions
from rag_appliance.chat.prompt import last_user_text, pack, with_context
from rag_appliance.errors import InvalidRequest, ModelNotFound, ServiceUnavailable
from rag_appliance.generation.base import Delta, Generator, Message, SamplingParams
from rag_appliance.retrieval.retriever import Retriever, SearchHit, SearchOptions
from rag_appliance.settings import GenerationSettings, RagSettings


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
        # Names that mean "answer over rag.default_collection"; the others chat plainly.
        self.rag_names = set(rag.model_aliases) - {self.served_name}
        self.names = {self.served_name, *settings.aliases, *self.rag_names}
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

    def retrieval(
        self, model: str | None, requested: RetrievalOptions | None
    ) -> RetrievalOptions | None:
        """Where to retrieve: the request's `rag`, or the default collection for a RAG alias."""
        default = self.rag.default_collection
        if requested is not None:
            if not (requested.collection or default):
                raise InvalidRequest(
                    "'rag.collection' is required (no rag.default_collection is configured)",
                    param="rag.collection",
                )
            return dataclasses.replace(requested, collection=requested.collection or default)
        if model in self.rag_names:
            if not default:
                raise InvalidRequest(
                    f"model '{model}' needs rag.default_collection configured, or send"
                    " 'rag': {\"collection\": ...}",
                    param="model",
                )
            return RetrievalOptions(collection=default)
        return None

    async def prepare(self, params: ChatParams) -> PreparedChat:
        """Retrieve and pack context, render the prompt, and fit it to the context window."""
        gen = self.generator
        budget = TokenBudget(gen.info.max_model_len, params.max_tokens, self.settings.max_tokens)
        messages = params.messages
        sources: list[SearchHit] | None = None
        if params.rag is not None:
            messages, sources = await self._with_retrieval(params, params.rag, budget)
        prompt = gen.chat_prompt(messages)
        s = self.settings
        sampling = SamplingParams(
            max_tokens=budget.completion(len(prompt)),
            temperature=s.temperature if params.temperature is None else params.temperature,
            top_p=s.top_p if params.top_p is None else params.top_p,
            stop=params.stop,
            seed=params.seed,
            frequency_penalty=params.frequency_penalty,
            presence_penalty=params.presence_penalty,
            repetition_penalty=params.repetition_penalty,
            logit_bias=params.logit_bias,
            logprobs=params.logprobs,
            structured=params.structured,
        )
        prepared = PreparedChat(prompt, sampling, messages, sources)
        if self.settings.record_prompts:
            self.recorded.append(prepared)
        return prepared

    async def _with_retrieval(
        self, params: ChatParams, options: RetrievalOptions, budget: TokenBudget
    ) -> tuple[list[Message], list[SearchHit]]:
        if self.retriever is None:
            raise ServiceUnavailable("retrieval needs a vector store; none is configured")
        question = last_user_text(params.messages)
        if not question:
            raise InvalidRequest("retrieval needs a user message with text", param="messages")
        assert options.collection is not None  # resolved by retrieval()
        hits = await self.retriever.search(
            options.collection,
            question,
            options.top_k or self.rag.top_k,
            options.filter,
            options.score_threshold,
            param_prefix="rag.",
            # The same defaults as /v1/search: chat, the UI and search never disagree.
            options=SearchOptions(mode=options.mode, rerank=options.rerank),
        )
        conversation = len(self.generator.chat_prompt(params.messages))
        room = budget.passages(conversation, self.rag.context_share)
        packed = pack(hits, room, self.generator.count_tokens)
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
