"""query -> query-side embedding -> filtered search over committed chunks."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rag_appliance.collections.filters import parse_filter
from rag_appliance.collections.service import CollectionService
from rag_appliance.embedding.service import EmbeddingService, EmbedParams
from rag_appliance.errors import AppError, InvalidRequest
from rag_appliance.settings import SearchSettings


@dataclass(frozen=True)
class SearchHit:
    """One retrieved chunk."""

    doc_id: str
    chunk_index: int
    text: str
    score: float
    metadata: dict[str, Any]
    source: str | None


class Retriever:
    """Searches a collection with the served embedding model."""

    def __init__(
        self,
        embedding: EmbeddingService,
        collections: CollectionService,
        settings: SearchSettings,
        observe: Callable[[float], None] | None = None,
    ) -> None:
        self.embedding = embedding
        self.collections = collections
        self.store = collections.store
        self.settings = settings
        self._observe = observe  # the retrieval-time histogram, seconds per search

    async def search(
        self,
        collection: str,
        query: str,
        top_k: int | None = None,
        filter: dict[str, Any] | None = None,
        score_threshold: float | None = None,
        param_prefix: str = "",
    ) -> list[SearchHit]:
        """The top_k chunks most similar to the query (only fully indexed documents)."""
        started = time.perf_counter()
        try:
            hits = await self._search(collection, query, top_k, filter, score_threshold)
        except AppError as exc:
            if param_prefix and exc.param:  # e.g. "rag.top_k" when called for chat
                exc.param = param_prefix + exc.param
            raise
        if self._observe is not None:
            self._observe(time.perf_counter() - started)
        return hits

    async def _search(
        self,
        collection: str,
        query: str,
        top_k: int | None,
        filter: dict[str, Any] | None,
        score_threshold: float | None,
    ) -> list[SearchHit]:
        if not query.strip():
            raise InvalidRequest("'query' must not be empty", param="query")
        k = top_k or self.settings.default_top_k
        if not 1 <= k <= self.settings.max_top_k:
            raise InvalidRequest(
                f"'top_k' must be between 1 and {self.settings.max_top_k}", param="top_k"
            )
        # Parsed (and so validated) here, once, for both /v1/search and chat's retrieval.
        flt = self.collections.visible(parse_filter(filter))
        await self.collections.check(collection)
        result = await self.embedding.embed(EmbedParams(inputs=[query], input_type="query"))
        hits = await asyncio.to_thread(
            self.store.search, collection, result.vectors[0], k, flt, score_threshold
        )
        return [
            SearchHit(
                doc_id=h.payload["doc_id"],
                chunk_index=int(h.payload["chunk_index"]),
                text=h.payload.get("text", ""),
                score=h.score,
                metadata=h.payload.get("metadata") or {},
                source=h.payload.get("source"),
            )
            for h in hits
        ]
