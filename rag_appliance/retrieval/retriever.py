"""query -> query-side embedding -> filtered search over committed chunks."""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rag_appliance.auth.access import authorize_read
from rag_appliance.collections.filters import parse_filter
from rag_appliance.collections.service import CollectionService
from rag_appliance.embedding.service import EmbeddingService, EmbedParams
from rag_appliance.errors import AppError, InvalidRequest
from rag_appliance.rerank.service import Reranker
from rag_appliance.settings import SearchSettings
from rag_appliance.store.base import FusionMethod, Hit, SearchMode


@dataclass(frozen=True)
class SearchHit:
    """One retrieved chunk."""

    doc_id: str
    chunk_index: int
    text: str
    score: float
    metadata: dict[str, Any]
    source: str | None


@dataclass(frozen=True)
class SearchOptions:
    """How to search; None means the configured default."""

    mode: SearchMode | None = None  # None: search.mode when the collection has BM25, else dense
    fusion: FusionMethod | None = None  # hybrid only
    group_by_document: bool = False  # top_k distinct documents, the best chunk of each
    rerank: bool | None = None  # None: rerank when a reranker is configured


@dataclass(frozen=True)
class SearchResult:
    """Hits and how they were found."""

    hits: list[SearchHit]
    mode: SearchMode
    fusion: FusionMethod | None
    reranked: bool


class Retriever:
    """Searches a collection with the served embedding model."""

    def __init__(
        self,
        embedding: EmbeddingService,
        collections: CollectionService,
        settings: SearchSettings,
        observe: Callable[[float], None] | None = None,
        reranker: Reranker | None = None,
    ) -> None:
        self.embedding = embedding
        self.collections = collections
        self.store = collections.store
        self.settings = settings
        self._observe = observe  # the retrieval-time histogram, seconds per search
        self.reranker = reranker

    async def search(
        self,
        collection: str,
        query: str,
        top_k: int | None = None,
        filter: dict[str, Any] | None = None,
        score_threshold: float | None = None,
        param_prefix: str = "",
        options: SearchOptions | None = None,
    ) -> list[SearchHit]:
        """The top_k best chunks for the query (only fully indexed documents)."""
        result = await self.run(
            collection, query, top_k, filter, score_threshold, param_prefix, options
        )
        return result.hits

    async def run(
        self,
        collection: str,
        query: str,
        top_k: int | None = None,
        filter: dict[str, Any] | None = None,
        score_threshold: float | None = None,
        param_prefix: str = "",
        options: SearchOptions | None = None,
    ) -> SearchResult:
        """Search, and say how (the mode used, whether it was reranked)."""
        started = time.perf_counter()
        try:
            # The one read check for /v1/search, chat's and completions' retrieval and the UI,
            # before the query is embedded or the collection looked up.
            authorize_read(collection)
            result = await self._search(
                collection, query, top_k, filter, score_threshold, options or SearchOptions()
            )
        except AppError as exc:
            if param_prefix and exc.param:  # e.g. "rag.top_k" when called for chat
                exc.param = param_prefix + exc.param
            raise
        if self._observe is not None:
            self._observe(time.perf_counter() - started)
        return result

    async def _search(
        self,
        collection: str,
        query: str,
        top_k: int | None,
        filter: dict[str, Any] | None,
        score_threshold: float | None,
        options: SearchOptions,
    ) -> SearchResult:
        if not query.strip():
            raise InvalidRequest("'query' must not be empty", param="query")
        k = top_k or self.settings.default_top_k
        if not 1 <= k <= self.settings.max_top_k:
            raise InvalidRequest(
                f"'top_k' must be between 1 and {self.settings.max_top_k}", param="top_k"
            )
        reranker = self._reranker_for(options.rerank)
        # Parsed (and so validated) here, once, for both /v1/search and chat's retrieval.
        flt = self.collections.visible(parse_filter(filter))
        sparse = await self.collections.has_sparse(collection)
        mode: SearchMode = options.mode or (self.settings.mode if sparse else "dense")
        fusion: FusionMethod = options.fusion or self.settings.fusion
        vector = None
        if mode != "sparse":
            result = await self.embedding.embed(EmbedParams(inputs=[query], input_type="query"))
            vector = result.vectors[0]
        depth = k if reranker is None else max(k, reranker.candidates)
        hits = await asyncio.to_thread(
            functools.partial(
                self.store.search,
                collection,
                vector,
                depth,
                flt,
                score_threshold,
                mode=mode,
                query_text=query,
                fusion=fusion,
                dense_weight=self.settings.dense_weight if fusion == "weighted" else None,
                prefetch_limit=self.settings.prefetch_limit,
                group_by_document=options.group_by_document,
            )
        )
        found = [_hit(h) for h in hits]
        if reranker is not None and found:
            ranked = await reranker.rerank_hits(query, [h.text for h in found], k)
            found = [dataclasses.replace(found[i], score=score) for i, score in ranked]
        return SearchResult(found[:k], mode, fusion if mode == "hybrid" else None, bool(reranker))

    def _reranker_for(self, requested: bool | None) -> Reranker | None:
        if requested is False:
            return None
        if self.reranker is None:
            if requested:
                raise InvalidRequest(
                    "'rerank' needs a reranker: none is configured (rerank.model)",
                    param="rerank",
                )
            return None
        return self.reranker


def _hit(h: Hit) -> SearchHit:
    return SearchHit(
        doc_id=h.payload["doc_id"],
        chunk_index=int(h.payload["chunk_index"]),
        text=h.payload.get("text", ""),
        score=h.score,
        metadata=h.payload.get("metadata") or {},
        source=h.payload.get("source"),
    )
