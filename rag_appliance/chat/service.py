"""Chat with or without retrieval; shared by the chat route and the UI."""

from __future__ import annotations

import collections
import dataclasses
from collections.abc import AsyncIterator, Collection
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from rag_appliance.chat.budget import TokenBudget
from rag_appliance.chat.citations import (
    Attributed,
    Attributor,
    CitedSource,
    MarkerFilter,
    embedder,
)
from rag_appliance.chat.history import fit_turns, newest_turn, retrieval_query, without_markers
from rag_appliance.chat.loopguard import GuardedDeltas
from rag_appliance.chat.params import ChatParams, RetrievalOptions
from rag_appliance.chat.prompt import pack, with_context
from rag_appliance.errors import InvalidRequest, ModelNotFound, ServiceUnavailable
from rag_appliance.feedback.log import SearchLog, chunk_id
from rag_appliance.generation.base import Delta, Generator, Message, SamplingParams
from rag_appliance.retrieval.retriever import Retriever, SearchHit, SearchOptions
from rag_appliance.settings import GenerationSettings, RagSettings


@dataclass(frozen=True)
class RetrievalReport:
    """What retrieval found and what of it, and of the conversation, fitted in the prompt."""

    collection: str
    query: str  # the text searched for (the newest question with earlier user turns)
    found: int  # passages the search returned
    used: int  # passages that fitted in the prompt
    dropped_turns: int  # earlier messages left out to make room

    def notice(self) -> str | None:
        """What the user should know about the grounding of this answer (None: all is well)."""
        notes = []
        if self.found == 0:
            notes.append(
                f"No passages in collection '{self.collection}' matched the question; the "
                "answer is not grounded in your documents."
            )
        elif self.used == 0:
            notes.append(
                f"{self.found} passages were found but none fitted in the model's context "
                "window; the answer is not grounded in your documents. Start a new "
                "conversation or ask a shorter question."
            )
        elif self.used < self.found:
            notes.append(
                f"{self.used} of the {self.found} passages found fitted in the model's context "
                "window; the others were left out."
            )
        if self.dropped_turns:
            notes.append(
                f"The {self.dropped_turns} earliest messages of the conversation were left out "
                "to fit the context window."
            )
        return " ".join(notes) or None

    def as_dict(self) -> dict[str, Any]:
        """The `retrieval` extension object of a response."""
        return {
            "collection": self.collection,
            "query": self.query,
            "passages_found": self.found,
            "passages_used": self.used,
            "messages_dropped": self.dropped_turns,
            "notice": self.notice(),
        }


@dataclass(frozen=True)
class PreparedChat:
    """What goes to the engine, and the sources behind it (None: plain chat)."""

    prompt: list[int]
    sampling: SamplingParams
    messages: list[Message]
    sources: list[SearchHit] | None
    retrieval: RetrievalReport | None = None


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
        self.search_log: SearchLog | None = None  # set by Services when search_log.enabled

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
        report: RetrievalReport | None = None
        if params.rag is not None:
            messages, sources, report = await self._with_retrieval(params, params.rag, budget)
        prompt = gen.chat_prompt(messages)
        sampling = self._sampling(params, budget.completion(len(prompt)))
        prepared = PreparedChat(prompt, sampling, messages, sources, report)
        if self.settings.record_prompts:
            self.recorded.append(prepared)
        return prepared

    async def _with_retrieval(
        self, params: ChatParams, options: RetrievalOptions, budget: TokenBudget
    ) -> tuple[list[Message], list[SearchHit], RetrievalReport]:
        """Search for the conversation's question, then fill the prompt by priority.

        The system prompt, the newest user turn and the passages come first; earlier turns
        are added back, newest first and whole, while they fit beside the answer's room.
        """
        if self.retriever is None:
            raise ServiceUnavailable("retrieval needs a vector store; none is configured")
        query = retrieval_query(params.messages, self.rag.history_turns)
        if not query:
            raise InvalidRequest("retrieval needs a user message with text", param="messages")
        assert options.collection is not None  # resolved by retrieval()
        hits = await self.retriever.search(
            options.collection,
            query,
            options.top_k or self.rag.top_k,
            options.filter,
            options.score_threshold,
            param_prefix="rag.",
            # The same defaults as /v1/search: chat, the UI and search never disagree.
            options=SearchOptions(mode=options.mode, rerank=options.rerank),
        )
        gen = self.generator
        conversation = without_markers(params.messages)
        core = len(gen.chat_prompt(newest_turn(conversation)))
        room = budget.passages(core, self.rag.context_share)
        packed = pack(hits, room, gen.count_tokens)
        fitted = fit_turns(
            conversation,
            lambda ms: len(gen.chat_prompt(with_context(ms, packed.system_text))),
            budget.limit - budget.answer_reserve(),
        )
        report = RetrievalReport(
            options.collection, query, len(hits), len(packed.hits), fitted.dropped
        )
        return with_context(fitted.messages, packed.system_text), packed.hits, report

    def stream(self, prepared: PreparedChat, request_id: str) -> AsyncIterator[Delta]:
        """The engine's deltas for a prepared chat."""
        return self.generator.stream(prepared.prompt, prepared.sampling, request_id)

    def extension(self, prepared: PreparedChat) -> dict[str, Any]:
        """The response's RAG extension fields: `sources` and `retrieval` ({} for plain chat)."""
        sources = self.sources(prepared)
        if sources is None:
            return {}
        report = None if prepared.retrieval is None else prepared.retrieval.as_dict()
        return {"sources": sources, "retrieval": report}

    def sources(self, prepared: PreparedChat) -> list[dict[str, Any]] | None:
        """The `sources` extension array, numbered as cited in the prompt."""
        if prepared.sources is None:
            return None
        snippet = self.rag.snippet_chars
        return [
            {
                "index": n,
                "chunk_id": chunk_id(hit),  # what POST /v1/feedback names
                "doc_id": hit.doc_id,
                "chunk_index": hit.chunk_index,
                "score": hit.score,
                "text": hit.text[:snippet],
                "metadata": hit.metadata,
                "source": hit.source,
            }
            for n, hit in enumerate(prepared.sources, 1)
        ]

    async def attribute(
        self,
        prepared: PreparedChat,
        text: str,
        *,
        base_url: str = "",
        collection: str | None = None,
        streamed: bool = False,
        request_id: str | None = None,
    ) -> Attributed:
        """The final answer: markers checked, citations added where the model gave none.

        `base_url` makes the annotations' URLs absolute; `collection` defaults to the one
        searched (else rag.default_collection); `streamed=True` appends added markers after
        the answer (already sent) instead of putting them in its sentences; `request_id`
        (the completion's id) logs the retrieval and citations when search_log is on. Plain
        chat (no sources) comes back as it is.
        """
        if prepared.sources is None or self.retriever is None:
            return Attributed(text)
        sources = self.cited_sources(prepared, base_url=base_url, collection=collection)
        attributor = Attributor(embedder(self.retriever.embedding))
        cited = await attributor.attribute(text, sources, append=streamed)
        report = prepared.retrieval
        if request_id is not None and self.search_log is not None and report is not None:
            self.search_log.record_chat(
                request_id,
                report.collection,
                report.query,
                prepared.sources,
                cited.cited,
                model=self.retriever.embedding.served_name,
                found=report.found,
            )
        return cited

    def prepare_raw(self, params: ChatParams, prompt: list[int]) -> PreparedChat:
        """A raw prompt (no template, no retrieval; /v1/completions) fitted to the context."""
        s = self.settings
        budget = TokenBudget(self.generator.info.max_model_len, params.max_tokens, s.max_tokens)
        # The same defaults as prepare(): chat and completions sample alike.
        sampling = self._sampling(params, budget.completion(len(prompt)))
        return PreparedChat(prompt=prompt, sampling=sampling, messages=[], sources=None)

    def _sampling(self, params: ChatParams, max_tokens: int) -> SamplingParams:
        s = self.settings
        return SamplingParams(
            max_tokens=max_tokens,
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

    def guarded_stream(self, prepared: PreparedChat, request_id: str) -> GuardedDeltas:
        """The engine's deltas through the loop guard and, for RAG, the citation filter.

        Invalid markers never leave; the stream closes (aborting the request) when the text
        loops. Structured outputs are left alone: a cut would break their JSON.
        """
        deltas = self.stream(prepared, request_id)
        after = None if prepared.sources is None else MarkerFilter(len(prepared.sources))
        return GuardedDeltas(deltas, after, guard=prepared.sampling.structured is None)

    def with_defaults(self, params: ChatParams, explicit: Collection[str] = ()) -> ChatParams:
        """RAG's anti-loop sampling defaults for the penalties the request did not set.

        `explicit`: the request's own field names (a penalty named there is kept as sent).
        """
        if params.rag is None or params.structured is not None:
            return params
        s = self.settings
        repetition, frequency = params.repetition_penalty, params.frequency_penalty
        if "repetition_penalty" not in explicit and repetition == 1.0:
            repetition = s.rag_repetition_penalty
        if "frequency_penalty" not in explicit and frequency == 0.0:
            frequency = s.rag_frequency_penalty
        return dataclasses.replace(
            params, repetition_penalty=repetition, frequency_penalty=frequency
        )

    def cited_sources(
        self, prepared: PreparedChat, *, base_url: str = "", collection: str | None = None
    ) -> list[CitedSource]:
        """The passages the model was given, numbered as in the prompt, with their URLs."""
        found = prepared.retrieval.collection if prepared.retrieval is not None else None
        name = collection or found or self.rag.default_collection or ""
        root = f"{base_url.rstrip('/')}/v1/collections/{quote(name, safe='')}/documents/"
        return [
            CitedSource(
                number=n,
                text=hit.text,
                title=str(hit.metadata.get("title") or hit.source or hit.doc_id),
                url=root + quote(hit.doc_id, safe=""),
            )
            for n, hit in enumerate(prepared.sources or [], 1)
        ]
